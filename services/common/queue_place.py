"""A queued job's place in line as a person reads it (the CLI and the dashboard say it alike)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def queue_place_text(place: Mapping[str, Any]) -> str:
    """A queued job's place (``position``, ``eta_s``) as a person reads it: ``3rd in line, about 40 s``."""
    text = f"{ordinal(int(place.get('position', 1)))} in line"
    eta = place.get("eta_s")
    if eta is None:
        return text
    eta = float(eta)
    about = f"{eta:.0f} s" if eta < 90 else f"{eta / 60:.0f} min" if eta < 5400 else f"{eta / 3600:.1f} h"
    return f"{text}, about {about}"
