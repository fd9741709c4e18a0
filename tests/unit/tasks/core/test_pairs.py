"""tasks/core/pairs.py: the one place that knows each host's pair and peer, and refuses an inventory whose
pairs are wrong (a host in two pairs, a pair with a missing side, an ambiguous inventory, pairs sharing
secrets or a tunnel) before anything runs."""

import json
from types import SimpleNamespace

import pytest

from tasks.core import pairs
from tasks.core.pairs import Entry, PairError, build, check_secrets, entries_of_hosts


def hosts(*rows):
    """{role: [(name, data)]} from (role, name, pair) rows (pair None: group_data's default)."""
    out = {"primary": [], "standby": []}
    for role, name, pair in rows:
        out[role].append((name, {} if pair is None else {"pair": pair}))
    return out


def test_one_pair_needs_no_names():
    found = build(entries_of_hosts(hosts(("primary", "p", None), ("standby", "s", None)), "inv.py"))
    assert list(found) == ["wirebot"] and (found["wirebot"].primary, found["wirebot"].standby) == ("p", "s")


def test_two_named_pairs_each_get_their_own_peer():
    found = build(entries_of_hosts(hosts(("primary", "a1", "a"), ("primary", "b1", "b"), ("standby", "a2", "a"),
                                         ("standby", "b2", "b")), "inv.py"))
    assert {name: (p.primary, p.standby) for name, p in found.items()} == {"a": ("a1", "a2"), "b": ("b1", "b2")}


def test_two_pairs_that_do_not_say_which_is_which_are_ambiguous():
    with pytest.raises(PairError, match=r"inv.py: pair 'wirebot' has 2 primary hosts \(A, B\), which is ambiguous"):
        build(entries_of_hosts(hosts(("primary", "A", None), ("primary", "B", None), ("standby", "A2", None),
                                     ("standby", "B2", None)), "inv.py"))


@pytest.mark.parametrize("rows, missing", [
    ((("primary", "a1", "a"), ("standby", "a2", "a"), ("primary", "b1", "b")), "pair 'b' has no standby"),
    ((("primary", "a1", "a"), ("standby", "a2", "a"), ("standby", "b2", "b")), "pair 'b' has no primary"),
])
def test_a_pair_with_a_missing_side_is_refused(rows, missing):
    with pytest.raises(PairError, match=missing):
        build(entries_of_hosts(hosts(*rows), "inv.py"))


def test_a_host_in_two_pairs_is_refused():
    with pytest.raises(PairError, match=r"host X is in two pairs \('a' and 'b'\)"):
        build(entries_of_hosts(hosts(("primary", "X", "a"), ("standby", "a2", "a"), ("primary", "X", "b"),
                                     ("standby", "b2", "b")), "inv.py"))


def test_a_host_listed_in_another_pairs_group_is_refused():
    entries = [Entry("a1", frozenset({"primary"}), "a", frozenset({"primary", "a"})),
               Entry("a2", frozenset({"standby"}), "a", frozenset({"standby", "a", "b"})),
               Entry("b1", frozenset({"primary"}), "b", frozenset({"primary", "b"})),
               Entry("b2", frozenset({"standby"}), "b", frozenset({"standby", "b"}))]
    with pytest.raises(PairError, match=r"host a2 is in two pairs \('a' by its 'pair', 'b' by group\)"):
        build(entries)


def test_a_host_in_both_roles_or_none_is_refused():
    with pytest.raises(PairError, match="host X is in both the 'primary' and the 'standby' group"):
        build(entries_of_hosts(hosts(("primary", "X", None), ("standby", "X", None)), "inv.py"))
    with pytest.raises(PairError, match="host m is in neither"):
        build([Entry("m", frozenset(), "wirebot")])


@pytest.mark.parametrize("name", ["primary", "all", "Acme", "a-b", "9lives", "", 3])
def test_pair_names_are_plain_and_not_a_group_of_their_own(name):
    with pytest.raises(PairError, match="pair name"):
        build(entries_of_hosts(hosts(("primary", "p", name), ("standby", "s", name)), "inv.py"))


def _secrets(root, name, hmac, token, tunnel):
    folder = root / name
    (folder / "cloudflared").mkdir(parents=True)
    (folder / "agent-hmac.key").write_text(hmac + "\n")
    (folder / "gateway-token.env").write_text(f"OPENCLAW_GATEWAY_TOKEN={token}\n")
    (folder / "cloudflared" / "credentials.json").write_text(json.dumps({"TunnelID": tunnel}))
    return folder


def _pairs_with(dirs):
    """{name: Pair} whose two hosts name the secrets directory dirs[name]."""
    return {name: pairs.Pair(name, SimpleNamespace(name=f"{name}1", secrets=str(folder)),
                             SimpleNamespace(name=f"{name}2", secrets=str(folder))) for name, folder in dirs.items()}


def check(found):
    check_secrets(found, lambda h: h.secrets, lambda h: "cloudflared")


def test_pairs_with_their_own_secrets_pass(tmp_path):
    check(_pairs_with({"a": _secrets(tmp_path, "a", "aa" * 32, "ta", "t-a"),
                       "b": _secrets(tmp_path, "b", "bb" * 32, "tb", "t-b")}))


@pytest.mark.parametrize("shared, expected", [
    ("hmac", "share the same agent-hmac.key"),
    ("token", "share the same gateway-token.env"),
    ("tunnel", "share the tunnel t-a"),
])
def test_pairs_sharing_a_secret_or_the_tunnel_are_refused(tmp_path, shared, expected):
    a = _secrets(tmp_path, "a", "aa" * 32, "ta", "t-a")
    b = _secrets(tmp_path, "b", "aa" * 32 if shared == "hmac" else "bb" * 32, "ta" if shared == "token" else "tb",
                 "t-a" if shared == "tunnel" else "t-b")
    with pytest.raises(PairError, match=f"pairs 'a' and 'b' {expected}"):
        check(_pairs_with({"a": a, "b": b}))


def test_pairs_sharing_a_secrets_directory_are_refused(tmp_path):
    a = _secrets(tmp_path, "a", "aa" * 32, "ta", "t-a")
    with pytest.raises(PairError, match="share the secrets directory"):
        check(_pairs_with({"a": a, "b": tmp_path / "a" / ".." / "a"}))


def test_a_pairs_hosts_name_one_secrets_directory(tmp_path):
    a, b = _secrets(tmp_path, "a", "aa" * 32, "ta", "t-a"), _secrets(tmp_path, "b", "bb" * 32, "tb", "t-b")
    found = _pairs_with({"a": a, "b": b})
    found["a"] = pairs.Pair("a", found["a"].primary, SimpleNamespace(name="a2", secrets=str(b)))
    with pytest.raises(PairError, match="pair 'a': its two hosts must name one secrets_dir"):
        check(found)


class FakeState:
    def __init__(self, limit):
        self.limit = limit

    def is_host_in_limit(self, host):
        return self.limit is None or host.name in self.limit


class FakeHost:
    def __init__(self, name, groups, pair, secrets):
        self.name, self.groups = name, groups
        self.data = {"pair": pair, "secrets_dir": secrets}


class FakeInventory(list):
    pass


@pytest.fixture
def two_pairs(tmp_path):
    a, b = _secrets(tmp_path, "a", "aa" * 32, "ta", "t-a"), _secrets(tmp_path, "b", "bb" * 32, "tb", "t-b")
    return FakeInventory([FakeHost("a1", ["primary", "a"], "a", str(a)), FakeHost("a2", ["standby", "a"], "a", str(a)),
                          FakeHost("b1", ["primary", "b"], "b", str(b)), FakeHost("b2", ["standby", "b"], "b", str(b))])


def test_pair_of_and_peer_of_stay_inside_the_hosts_own_pair(two_pairs):
    a1, a2, b1, b2 = two_pairs
    assert pairs.peer_of(b2, two_pairs) is b1 and pairs.peer_of(b1, two_pairs) is b2
    assert pairs.peer_of(a1, two_pairs) is a2 and pairs.pair_of(a2, two_pairs).name == "a"


def test_a_playbook_acts_on_the_pair_it_is_limited_to(two_pairs):
    assert pairs.selected(FakeState({"b1", "b2"}), two_pairs).name == "b"
    assert pairs.selected(FakeState({"a2"}), two_pairs).primary.name == "a1"
    with pytest.raises(PairError, match=r"acts on one pair and the inventory has 2 \(a, b\): name it with `--limit"):
        pairs.selected(FakeState(None), two_pairs)
    assert [p.name for p in pairs.in_limit(FakeState(None), two_pairs)] == ["a", "b"]  # status: every pair


def test_with_one_pair_the_limit_is_optional(tmp_path):
    one = FakeInventory([FakeHost("p", ["primary"], "wirebot", str(tmp_path)),
                         FakeHost("s", ["standby"], "wirebot", str(tmp_path))])
    assert pairs.selected(FakeState(None), one).standby.name == "s"


def test_an_inventory_never_gets_the_pairs_of_another_that_had_its_id(tmp_path, two_pairs, monkeypatch):
    """A gone inventory's id may be reused by a new one (CPython): its cached pairs are not the new one's."""
    one = FakeInventory([FakeHost("p", ["primary"], "wirebot", str(tmp_path)),
                         FakeHost("s", ["standby"], "wirebot", str(tmp_path))])
    monkeypatch.setitem(pairs._RESOLVED, id(one), (two_pairs, pairs.pairs(two_pairs)))  # as if the id was reused
    assert list(pairs.pairs(one)) == ["wirebot"]
