"""Comparing pose detections as sets of people, the way batch size and CPU cannot change them.

Two runs of the same model on the same frame give the same people with the same keypoints (up
to float noise), but not necessarily in the same order: with random weights many candidates'
scores lie closer together than the noise that the batch size or the CPU's vector width put on
them (float sums in a different order), so their ranks can swap. :func:`match_people` pairs the
people of two runs by geometry (Hungarian assignment on box and keypoints) instead of by rank.

``CONF`` is the confidence threshold the batch comparisons use with the random-weights model: its
candidates' scores come in three clusters, one per head stride (about 1e-5, 4e-5 and 1.6e-4), and
the threshold sits between the first two, a factor of two from each, so which candidates are kept
does not depend on float noise. With ``conf=0`` the model's top-300 cut falls inside the densest
cluster, where near-equal scores decide which candidates make the cut.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CONF = 2e-5
MARGIN = 1.5
"""Kept scores are at least ``MARGIN * CONF``, dropped ones at most ``CONF / MARGIN``."""
_MISMATCH = 1e6


def people(boxes: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """One row per person: the box (4) then every keypoint's x, y and confidence."""
    return np.concatenate([np.asarray(boxes, np.float64).reshape(len(boxes), -1),
                           np.asarray(keypoints, np.float64).reshape(len(keypoints), -1)], axis=1)  # fmt: skip


def frames_of(players: dict[str, Any]) -> dict[int, np.ndarray]:
    """``results.json``'s players regrouped per frame: frame index → :func:`people` rows."""
    by_frame: dict[int, list[Any]] = {}
    for player in players.values():
        for entry in player["frames"]:
            by_frame.setdefault(entry["frame"], []).append(entry)
    return {
        frame: people(np.array([e["box"] for e in entries]), np.array([e["keypoints"] for e in entries]))
        for frame, entries in sorted(by_frame.items())
    }


def match_people(a: np.ndarray, b: np.ndarray, atol: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Pair the rows of ``a`` and ``b`` (as many): rows, columns, and how many pairs differ by more than ``atol``.

    A pair's difference is the largest absolute difference of its values; the assignment first
    minimises the number of pairs beyond ``atol``, then the total difference.
    """
    from ultralytics.utils.ops import linear_sum_assignment

    assert a.shape == b.shape, f"{len(a)} people against {len(b)}"
    diff = np.abs(a[:, None, :] - b[None, :, :]).max(axis=-1)
    rows, cols = linear_sum_assignment(diff + _MISMATCH * (diff > atol))
    return rows, cols, int((diff[rows, cols] > atol).sum())


def assert_same_people(a: np.ndarray, b: np.ndarray, atol: float, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Every person of ``a`` has one in ``b`` within ``atol`` (and the other way round); the pairing."""
    rows, cols, unmatched = match_people(a, b, atol)
    assert unmatched == 0, f"{where}: {unmatched} of {len(a)} people have no counterpart within {atol}"
    return rows, cols
