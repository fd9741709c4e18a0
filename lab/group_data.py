"""Read the project's group_data/*.py settings the way pyinfra does (module-level names)."""

import runpy
from pathlib import Path

GROUP_DATA = Path(__file__).resolve().parent.parent / "group_data"


def group_settings(group: str) -> dict:
    """The public names defined in group_data/<group>.py."""
    values = runpy.run_path(str(GROUP_DATA / f"{group}.py"))
    return {key: value for key, value in values.items() if not key.startswith("_")}
