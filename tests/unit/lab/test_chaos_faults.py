"""lab/chaos.py and lab/delay_proxy.py without a lab: which nft rules, processes and cgroup writes each fault
makes, and that healing removes every one of them."""

import random

import pytest

from lab import chaos, delay_proxy, settings
from lab.shell import LabError


def test_loss_rule_drops_the_given_share_of_packets_to_the_destination_only():
    rule = chaos.loss_rule("standby", 25)
    assert rule.startswith("add rule inet wirebot_chaos loss ")
    assert f"ip daddr {settings.address('standby')} " in rule
    assert "numgen random mod 1000 < 250 " in rule and rule.rstrip().endswith('drop comment "chaos loss to standby"')
    assert "< 5 " in chaos.loss_rule("edge", 0.5)  # per mille: half a percent is kept
    assert "< 1000 " in chaos.loss_rule("edge", 100)


def test_delay_rule_redirects_new_tcp_to_the_proxy_but_never_ssh_nor_the_proxys_own_connections():
    port = chaos.proxy_port("primary", "standby")
    rule = chaos.delay_rule("standby", port)
    assert f"ip daddr {settings.address('standby')} tcp dport != 22 meta mark != {chaos.MARK:#x} " in rule
    assert f"redirect to :{port} " in rule
    argv = chaos.proxy_argv("primary", "standby", 200, 50, 30)
    assert argv[:4] == ["ip", "netns", "exec", settings.netns("primary")]
    assert argv[argv.index("--mark") + 1] == f"{chaos.MARK:#x}"  # the mark the rule skips
    assert argv[argv.index("--port") + 1] == str(port)
    assert [argv[argv.index(f) + 1] for f in ("--delay-ms", "--reply-ms", "--jitter-ms")] == ["200", "50", "30"]


def test_every_path_gets_its_own_proxy_port():
    pairs = [(a, b) for a in settings.HOSTS for b in settings.HOSTS if a != b]
    assert len({chaos.proxy_port(a, b) for a, b in pairs}) == len(pairs)


def test_removing_one_fault_deletes_only_the_rules_with_its_comment():
    listing = """table inet wirebot_chaos { # handle 7
	chain loss { # handle 1
		type filter hook output priority filter - 5; policy accept;
		ip daddr 10.213.3.3 numgen random mod 1000 < 300 counter drop comment "chaos loss to standby" # handle 3
		ip daddr 10.213.3.4 numgen random mod 1000 < 100 counter drop comment "chaos loss to edge" # handle 5
		ip daddr 10.213.3.3 numgen random mod 1000 < 300 counter drop comment "chaos loss to standby" # handle 9
	}
}"""
    script = chaos.delete_rules_script(listing, "loss", "chaos loss to standby")
    assert script == ("delete rule inet wirebot_chaos loss handle 3\n"
                      "delete rule inet wirebot_chaos loss handle 9\n")
    assert chaos.delete_rules_script(listing, "loss", "chaos loss to monitor") == ""


def test_setup_is_idempotent_and_removal_takes_the_whole_table_even_when_absent():
    setup = chaos.setup_script()
    assert all(line.startswith("add ") for line in setup.splitlines())  # `add` never fails on an existing one
    assert "type filter hook output" in setup and "type nat hook output" in setup
    assert chaos.remove_script() == "add table inet wirebot_chaos\ndelete table inet wirebot_chaos\n"


def test_bad_input_is_refused_naming_what_before_anything_changes(monkeypatch):
    monkeypatch.setattr(chaos, "run", lambda *a, **k: pytest.fail("ran a command for bad input"))
    with pytest.raises(LabError, match="unknown lab host 'nowhere'"):
        chaos.loss("primary", "nowhere", 10)
    with pytest.raises(LabError, match="itself"):
        chaos.delay("primary", "primary", 100)
    with pytest.raises(LabError, match="loss percent must be between"):
        chaos.loss("primary", "standby", 150)
    with pytest.raises(LabError, match="jitter ms must be between"):
        chaos.delay("primary", "standby", 100, jitter_ms=-1)
    with pytest.raises(LabError, match="booted lab host"):
        chaos.starve("edge", 0.5)
    with pytest.raises(LabError, match="CPU share must be between"):
        chaos.starve("primary", 0)


def test_cpu_quota_follows_the_share():
    assert chaos.quota_us(0.25) == 25_000 and chaos.quota_us(1.5) == 150_000
    assert chaos.quota_us(0.001) == 1000  # the kernel's minimum


def test_heal_all_removes_tables_in_every_namespace_stops_every_proxy_and_unstarves_every_host(
        monkeypatch, tmp_path):
    monkeypatch.setattr(settings, "RUN_DIR", tmp_path)
    for name in ("chaos-delay-primary-standby", "chaos-delay-edge-primary", "chaos-hog-primary-0", "edge"):
        (tmp_path / f"{name}.pid").write_text("1\n")
    nft, stopped, unstarved = [], [], []
    monkeypatch.setattr(chaos.network, "namespace_exists", lambda name: True)
    monkeypatch.setattr(chaos.shutil, "which", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(chaos, "_nft", lambda name, script, check=True: nft.append((name, script)))
    monkeypatch.setattr(chaos.processes, "stop", lambda name, *a, **k: stopped.append(name))
    monkeypatch.setattr(chaos, "unstarve", unstarved.append)
    chaos.heal_all()
    assert sorted(nft) == sorted((name, chaos.remove_script()) for name in settings.HOSTS)
    assert sorted(stopped) == ["chaos-delay-edge-primary", "chaos-delay-primary-standby"]  # not the edge
    assert unstarved == settings.SYSTEMD_HOSTS


def test_unstarve_kills_the_hogs_and_moves_every_process_home(monkeypatch, tmp_path):
    monkeypatch.setattr(settings, "RUN_DIR", tmp_path)
    monkeypatch.setattr(chaos, "CPU", tmp_path / "cpu")
    group = chaos.cpu_group("primary")
    group.mkdir(parents=True)
    (group / "cgroup.procs").write_text("11\n12\n")
    (group / "cpu.cfs_quota_us").write_text("20000\n")
    for index in (0, 1):
        (tmp_path / f"{chaos.hog_name('primary', index)}.pid").write_text("1\n")
    moved, stopped = [], []
    monkeypatch.setattr(chaos.processes, "stop", lambda name, *a, **k: stopped.append(name))
    monkeypatch.setattr(chaos.processes, "pid_of", lambda name: None)
    monkeypatch.setattr(chaos, "_move", lambda pids, where: moved.append((list(pids), where)))
    monkeypatch.setattr(type(group), "rmdir", lambda self: None)
    chaos.unstarve("primary")
    assert sorted(stopped) == ["chaos-hog-primary-0", "chaos-hog-primary-1"]
    assert (group / "cpu.cfs_quota_us").read_text() == "-1\n"  # unlimited before the moves
    assert moved[0] == (["11", "12"], tmp_path / "cpu")  # nspawn gone: the root group


def test_delays_keep_order_never_deliver_early_and_stay_within_the_jitter():
    rng = random.Random(7)
    arrivals = [i * 0.01 for i in range(200)]
    due = delay_proxy.due_times(arrivals, 0.2, 0.1, rng)
    assert due == sorted(due)
    assert all(d >= a for a, d in zip(arrivals, due))
    assert all(d >= a + 0.1 - 1e-9 for a, d in zip(arrivals, due))  # delay - jitter at least
    assert all(d <= a + 0.3 + 1e-9 for a, d in zip(arrivals, due))  # delay + jitter at most
    assert len(set(due)) < len(due)  # a chunk that drew less waits for the one before: bunched, not reordered
    assert delay_proxy.due_times([1.0, 2.0], 0.0, 0.0) == [1.0, 2.0]
