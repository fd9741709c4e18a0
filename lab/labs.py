"""Several labs at once: lab/settings.py's values for any lab id, and the ids a multi-lab run uses.

lab/settings.py describes the lab WIREBOT_LAB_ID names; `lab_settings(N)` gives the same values for lab N
(its addresses, edge, state and secrets directories, SSH key), so one inventory can deploy several labs
as several pairs (lab/inventory.py with WIREBOT_LAB_IDS=7,9) and a test can reach the other lab's hosts.
"""

import os
import runpy
from pathlib import Path
from types import SimpleNamespace

SETTINGS_FILE = Path(__file__).resolve().parent / "settings.py"


def lab_settings(lab_id: int) -> SimpleNamespace:
    """lab/settings.py as it reads with WIREBOT_LAB_ID=lab_id (address(), netns() included)."""
    if os.environ.get("WIREBOT_LAB_DIR"):
        raise SystemExit("WIREBOT_LAB_DIR names one lab's state directory: unset it to use several labs")
    saved = os.environ.get("WIREBOT_LAB_ID")
    os.environ["WIREBOT_LAB_ID"] = str(lab_id)
    try:
        values = runpy.run_path(str(SETTINGS_FILE))
    finally:
        if saved is None:
            os.environ.pop("WIREBOT_LAB_ID", None)
        else:
            os.environ["WIREBOT_LAB_ID"] = saved
    return SimpleNamespace(**{key: value for key, value in values.items() if not key.startswith("__")})


def lab_ids(text: str) -> list:
    """WIREBOT_LAB_IDS ("7,9"): distinct lab ids 0..9, in the given order; SystemExit when malformed."""
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"WIREBOT_LAB_IDS must be lab ids separated by commas (e.g. 7,9), not {text!r}") from None
    if len(ids) < 1 or len(set(ids)) != len(ids) or not all(0 <= i <= 9 for i in ids):
        raise SystemExit(f"WIREBOT_LAB_IDS must list distinct lab ids 0..9, not {text!r}")
    return ids


def second_lab_id(first: int) -> int:
    """The lab a two-pair test adds to lab `first` (WIREBOT_LAB_SECOND_ID, else 9, or 8 when `first` is 9)."""
    chosen = os.environ.get("WIREBOT_LAB_SECOND_ID")
    second = int(chosen) if chosen else (8 if first == 9 else 9)
    if second == first or not 0 <= second <= 9:
        raise SystemExit(f"WIREBOT_LAB_SECOND_ID must be a lab id 0..9 other than {first}, not {second}")
    return second


def pair_name(lab_id: int) -> str:
    """The pair a lab is in a multi-lab inventory."""
    return f"lab{lab_id}"
