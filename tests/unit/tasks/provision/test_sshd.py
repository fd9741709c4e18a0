"""The sshd drop-in (tasks/provision/sshd) as rendered for each role, and how it is installed."""

import runpy
import subprocess

from tasks.core import ops
from tasks.core.settings_check import GROUP_DATA
from tasks.provision import sshd


class Data(dict):
    __getattr__ = dict.__getitem__


def _data():
    return Data({k: v for k, v in runpy.run_path(str(GROUP_DATA / "all.py")).items() if not k.startswith("_")})


def _settings(text):
    return [line.split(None, 1) for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_both_roles_take_keys_only_and_forward_nothing():
    for standby in (False, True):
        settings = dict(line for line in _settings(sshd.dropin_text(_data(), standby))
                        if line[0] != "Match" and not line[0].startswith(" "))
        assert settings["PasswordAuthentication"] == "no" and settings["KbdInteractiveAuthentication"] == "no"
        assert settings["PermitRootLogin"] == "prohibit-password"
        for key in ("AllowAgentForwarding", "AllowTcpForwarding", "AllowStreamLocalForwarding", "X11Forwarding",
                    "PermitTunnel", "GatewayPorts", "PermitUserEnvironment"):
            assert settings[key] == "no", key
        assert settings["DisableForwarding"] == "yes"


def test_only_the_standby_confines_the_replication_accounts():
    assert "Match" not in sshd.dropin_text(_data(), False)
    text = sshd.dropin_text(_data(), True)
    repl = text[text.index("Match User wirebot-repl"):text.index("Match User wirebot-files")]
    files = text[text.index("Match User wirebot-files"):]
    assert "ChrootDirectory /var/lib/wirebot-replica\n" in repl
    assert "ForceCommand internal-sftp -d /litestream -u 0027 -P symlink,hardlink\n" in repl
    assert "ForceCommand /usr/local/libexec/wirebot-replica-rsync /var/lib/wirebot-replica\n" in files
    assert "ChrootDirectory" not in files
    for block in (repl, files):
        assert "AuthorizedKeysFile /etc/ssh/wirebot-authorized-keys/%u\n" in block
        assert "PermitTTY no" in block and "AuthenticationMethods publickey" in block


def test_a_refused_dropin_is_removed_and_never_moved_into_place(tmp_path):
    """The install script with an sshd that refuses: exit 1, sshd's message, the live drop-in untouched,
    no reload."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sshd").write_text("#!/bin/sh\necho 'line 3: Bad configuration option: NoSuchOption' >&2\nexit 255\n")
    (fake / "systemctl").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/systemctl.log\n")
    for tool in ("sshd", "systemctl"):
        (fake / tool).chmod(0o755)
    dest, new = tmp_path / "10-wirebot.conf", tmp_path / "10-wirebot.conf.wirebot-new"
    dest.write_text("old\n")
    new.write_text("NoSuchOption yes\n")
    script = ops._sshd_install_script(str(new), str(dest)).replace("/usr/sbin/sshd", str(fake / "sshd"))
    script = script.replace("mktemp /etc/ssh/", f"mktemp {tmp_path}/").replace("chown root:root", "true")
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                            env={"PATH": f"{fake}:/usr/bin:/bin"})
    assert result.returncode == 1
    assert f"sshd -t refused {dest}: line 3: Bad configuration option: NoSuchOption" in result.stderr
    assert dest.read_text() == "old\n" and not new.exists()
    assert not (tmp_path / "systemctl.log").exists()
    assert not list(tmp_path.glob(".wirebot-sshd-check.*"))


def test_a_dropin_sshd_does_not_read_is_taken_back(tmp_path):
    """sshd accepts the file but its config does not include the folder: the previous file comes back and
    sshd is not reloaded, so the next deploy tries again."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sshd").write_text("#!/bin/sh\n[ \"$1\" = -T ] && echo 'passwordauthentication yes'\nexit 0\n")
    (fake / "systemctl").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/systemctl.log\n")
    for tool in ("sshd", "systemctl"):
        (fake / tool).chmod(0o755)
    dest, new = tmp_path / "10-wirebot.conf", tmp_path / "10-wirebot.conf.wirebot-new"
    dest.write_text("old\n")
    new.write_text("PasswordAuthentication no\n")
    script = ops._sshd_install_script(str(new), str(dest)).replace("/usr/sbin/sshd", str(fake / "sshd"))
    script = script.replace("mktemp /etc/ssh/", f"mktemp {tmp_path}/").replace("chown root:root", "true")
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                            env={"PATH": f"{fake}:/usr/bin:/bin"})
    assert result.returncode == 1
    assert f"not in effect: /etc/ssh/sshd_config must Include {tmp_path}/*.conf; the previous file is back" \
        in result.stderr
    assert dest.read_text() == "old\n" and not new.exists() and not (tmp_path / "10-wirebot.conf.wirebot-old").exists()
    assert not (tmp_path / "systemctl.log").exists()
