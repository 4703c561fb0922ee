"""Which sweep point a profiled run explains, and which of its train fields are the controlled change.

A profiled run is its own sweep point (its job has a profile), so it never enters a comparison table. It
explains the unprofiled point whose job is its own without the profile. A controlled rerun may also change a
train field (``CONTROL_TRAIN_FIELDS``: ``train.sdpa_backend``); it then explains the point that differs from it
only there, and that field, against the point's value, is its change. Which run is the control therefore
depends on the point, not on the field's default: where a suite pins ``train.sdpa_backend=efficient``, a profiled
efficient run is that point's own profile and a profiled ``auto`` run the control; where the suite leaves it at
``auto``, the reverse. Without any unprofiled run to join (a folder of profiled runs alone), the field's default
stands for the point (``unprofiled_point_hash``).
"""
from __future__ import annotations

from typing import Any

from harness.config.job import control_train_values, profile_free_point_hash, unprofiled_point_hash
from harness.records import Result

DEFAULTS: dict[str, Any] = control_train_values({})  # every control train field at its default
SHORT_NAMES = {"sdpa_backend": "sdpa"}  # a change's name in a row label


def explained_points(profiled: list[Result], unprofiled: list[Result]) -> dict[str, tuple[dict[str, Any],
                                                                                         list[Result]]]:
    """Point hash -> (the point's control train values, the profiled runs that explain it)."""
    points: dict[str, dict[str, Any]] = {}  # unprofiled point hash (as recorded) -> its control train values
    recomputed: dict[str, str] = {}  # its job's point hash computed today -> the recorded one (older results drift)
    loose: dict[str, list[str]] = {}  # the same hash with the control fields at their defaults -> points
    for r in unprofiled:
        job = r.job.to_dict()
        if r.point_hash and r.point_hash not in points:
            points[r.point_hash] = control_train_values(job)
            recomputed.setdefault(profile_free_point_hash(job), r.point_hash)
            loose.setdefault(unprofiled_point_hash(job), []).append(r.point_hash)
    out: dict[str, tuple[dict[str, Any], list[Result]]] = {}
    for r in profiled:
        point, values = _point_of(r.job.to_dict(), points, recomputed, loose)
        out.setdefault(point, (values, []))[1].append(r)
    return out


def _point_of(job: dict[str, Any], points: dict[str, dict[str, Any]], recomputed: dict[str, str],
              loose: dict[str, list[str]]) -> tuple[str, dict[str, Any]]:
    exact = recomputed.get(profile_free_point_hash(job))
    if exact is not None:
        return exact, points[exact]
    key = unprofiled_point_hash(job)
    candidates = sorted(loose.get(key, []), key=lambda h: (points[h] != DEFAULTS, h))  # the default's point first
    if candidates:
        return candidates[0], points[candidates[0]]
    return key, dict(DEFAULTS)


def train_changes(job_train: dict[str, Any] | None, point: dict[str, Any] | None) -> list[str]:
    """A profiled run's control train fields that differ from its point's, as ``sdpa=efficient``."""
    values = control_train_values({"train": job_train or {}})
    point = point if point is not None else DEFAULTS
    return [f"{SHORT_NAMES.get(key, key)}={value}" for key, value in values.items() if value != point.get(key)]
