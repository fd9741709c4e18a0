"""wirebot.common.layout: the one owner of the on-host layout. Its values, that it imports cleanly anywhere
(the control side's Python too: nothing but the standard library, no I/O at import), and that no other agent
module spells one of its facts again."""

import ast
import subprocess
import sys
from pathlib import Path

from wirebot.common import layout
from wirebot.standby import machine

PACKAGE = Path(layout.__file__).resolve().parents[1]


def test_units_and_services():
    assert layout.SERVICES == ("openclaw-gateway", "wirebot-scoreboard")
    assert layout.serving_units() == ("cloudflared-wirebot", "openclaw-gateway", "wirebot-scoreboard")
    assert layout.serving_units("cf-other")[0] == "cf-other"  # the connector first: the fence stops it first
    assert layout.watched_units("cf-other") == ("openclaw-gateway", "wirebot-scoreboard", "cf-other", "litestream")


def test_serving_states_are_the_machines():
    assert layout.SERVING_STATES == (machine.ACTIVATING, machine.ACTIVE)
    assert [s for s in machine.STATES if layout.serving(s)] == [machine.ACTIVATING, machine.ACTIVE]
    assert not layout.serving(None) and not layout.serving("active")


def test_files_under_the_state_directory():
    assert layout.state_file() == "/var/lib/wirebot/state.json"
    assert layout.fenced_file() == "/var/lib/wirebot/fenced.json"
    assert layout.state_file("/srv/wb/") == "/srv/wb/state.json"
    assert layout.fenced_file("/srv/wb") == "/srv/wb/fenced.json"
    assert layout.recovery_markers_dir("/srv/wb", "4") == "/srv/wb/recovery/epoch-4"
    assert layout.lock_file("/srv/wb/state.json") == "/srv/wb/state.json.lock"


def test_it_imports_alone_with_the_standard_library_only():
    code = ("import sys; before = set(sys.modules); from wirebot.common import layout; "
            "print(sorted(m for m in set(sys.modules) - before if not m.startswith('wirebot')))")
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(PACKAGE.parent)!r}); "
                          + code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # no third-party module, no side effect beyond defining names


FACTS = {"fenced.json", "state.json", "openclaw-gateway", "wirebot-scoreboard", "cloudflared-wirebot",
         "/var/lib/wirebot"}


def _code_strings(path):
    """String constants of a module's code (docstrings left out: prose may name a fact)."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_no_other_agent_module_spells_a_layout_fact():
    spelled = {str(p.relative_to(PACKAGE)): sorted({f for s in _code_strings(p) for f in FACTS if f in s})
               for p in sorted(PACKAGE.rglob("*.py")) if p.name != "layout.py"}
    assert {path: facts for path, facts in spelled.items() if facts} == {}
