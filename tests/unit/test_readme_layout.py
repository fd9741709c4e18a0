"""The README's layout table matches the tree: every path it names exists, and every entry point, library
folder and agents' room is named in it (a newcomer finds each place from the front door)."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def _layout_rows() -> list[str]:
    text = README.read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `")]


def _named_paths() -> set[str]:
    """Every `path` in the table's first column; `a/`, `b.py` after a folder are read relative to it."""
    named = set()
    for row in _layout_rows():
        first = row.split("|")[1]
        base = ""
        for token in re.findall(r"`([^`]+)`", first):
            path = token if "/" in token.rstrip("/") or not base else base + token
            named.add(path.rstrip("/"))
            if token.endswith("/"):
                base = token
            elif "/" in token:
                base = token.rsplit("/", 1)[0] + "/"
    return named


def test_the_layout_table_has_rows():
    assert len(_layout_rows()) >= 10


@pytest.mark.parametrize("path", sorted(_named_paths()))
def test_every_path_the_table_names_exists(path):
    assert (ROOT / path).exists(), f"README's layout table names {path!r}, which is not in the tree"


def _tracked() -> list[str]:
    """The files git tracks (so a venv, egg-info or cache is never a 'place')."""
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def _places_a_newcomer_must_find() -> list[str]:
    """Every top-level folder, every entry point and library folder of tasks/, every agents' room."""
    places = set()
    for path in _tracked():
        parts = path.split("/")
        if len(parts) > 1 and not parts[0].startswith("."):
            places.add(parts[0])
        if parts[0] == "tasks" and len(parts) == 2 and parts[1] != "__init__.py":
            places.add(path)
        if parts[0] == "tasks" and len(parts) > 2:
            places.add("/".join(parts[:2]))
        if parts[:3] == ["files", "agents", "wirebot"] and len(parts) > 4:
            places.add("/".join(parts[:4]))
    return sorted(places)


@pytest.mark.parametrize("place", _places_a_newcomer_must_find())
def test_every_entry_point_and_folder_is_in_the_table(place):
    named = _named_paths()
    assert place in named or any(n.startswith(place + "/") for n in named), (
        f"{place} is in the tree but not in README's layout table")
