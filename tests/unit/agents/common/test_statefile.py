"""wirebot.common.statefile: atomic 0600 JSON state files."""

import os
import stat

from wirebot.common import statefile


def test_statefile_roundtrip_atomic_0600(tmp_path):
    path = str(tmp_path / "sub" / "state.json")
    default = {"state": "STANDBY", "epoch": 1}
    assert statefile.load(path, default) == default
    statefile.save(path, {"state": "ACTIVE", "epoch": 3})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert statefile.load(path, default) == {"state": "ACTIVE", "epoch": 3}
    assert [p for p in os.listdir(os.path.dirname(path)) if p.endswith(".tmp")] == []


def test_statefile_fills_defaults_and_survives_corruption(tmp_path, capsys):
    path = tmp_path / "state.json"
    path.write_text('{"epoch": 4}')
    assert statefile.load(str(path), {"state": "STANDBY", "epoch": 1}) == {"state": "STANDBY", "epoch": 4}
    path.write_text("{torn")
    assert statefile.load(str(path), {"epoch": 1}) == {"epoch": 1}
    assert "state-unreadable" in capsys.readouterr().out


def test_statefile_default_not_aliased(tmp_path):
    default = {"activation": {}}
    loaded = statefile.load(str(tmp_path / "none.json"), default)
    loaded["activation"]["x"] = 1
    assert default == {"activation": {}}
