"""The drill's settings (tasks/drills/drill_settings.py): defaults, command-line overrides, malformed values,
the public endpoint."""

import pytest

from tasks.drills import drill_settings

LAB = {"witness_public_url": "http://10.213.3.4:80/health", "witness_public_host_header": "wins.wirebot.chat"}


def test_settings_defaults_and_overrides_from_the_command_line():
    values = drill_settings.load({})
    assert values["drill_surface_rate"] == 2.0 and values["drill_api_hostname"] == "api.wirebot.chat"
    assert set(values) == set(drill_settings.DEFAULTS)
    loaded = drill_settings.load({"drill_surface_rate": "5", "drill_surface_backoff_jitter": "0"})
    assert loaded["drill_surface_rate"] == 5.0
    for key, bad in (("drill_surface_rate", "fast"), ("drill_surface_rate", "0"), ("drill_surface_backoff_jitter", 2),
                     ("drill_public_base_url", "edge:80"), ("drill_api_hostname", " ")):
        with pytest.raises(drill_settings.DrillSettingError, match=key):
            drill_settings.load({key: bad})


def test_public_endpoint_real_and_lab():
    real = drill_settings.public_base({"witness_public_url": "https://wins.wirebot.chat/health"},
                                      drill_settings.load({}))
    assert drill_settings.public_url(real, "api.wirebot.chat") == ("https://api.wirebot.chat", "")
    lab = drill_settings.public_base(LAB, drill_settings.load({}))
    assert drill_settings.public_url(lab, "helm.wirebot.chat") == ("http://10.213.3.4:80", "helm.wirebot.chat")
    explicit = drill_settings.public_base({}, drill_settings.load({"drill_public_base_url": "http://127.0.0.1:8080/"}))
    assert drill_settings.public_url(explicit, "api.wirebot.chat") == ("http://127.0.0.1:8080", "api.wirebot.chat")
