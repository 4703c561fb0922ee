"""Re-derive the time attribution of committed ``profile=time`` results from the traces kept beside them.

The attribution (harness/results/time_attribution.py, harness/results/gpu_idle.py) is a pure function of the
kept Chrome trace, so a result recorded before a part of it existed (the kernel classes, the GPU's idle
causes and the SDPA backend ops came after session 7's runs) gets it from its own trace, not from a new run:

    python benchmarks/reattribute_time.py results/h200/session7/throughput_7b

Only those fields (and ``not_separated``: the parts no LM-head mark could split off, which came with them)
are written; the parts the result has are recomputed first and must equal the recorded ones (the same trace,
the same code path), or the file is left as it was and the script exits 1. The one allowed difference: a
part the attribution now leaves unseparated (None) that the older one recorded as exactly 0.0.
A trace cut to its first step (``trace_note``) is skipped: it no longer holds the recorded window. Each
updated result says so in its time profile's notes.
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.atomic import atomic_write_json  # noqa: E402
from harness.records import Result  # noqa: E402
from harness.results.time_attribution import attribute_steps  # noqa: E402

NEW_FIELDS = ("kernel_classes_s", "idle", "sdpa_ops", "not_separated")
# (the same words as when it wrote only the first three: a result it updates again keeps one note)
NOTE = ("kernel classes, GPU idle causes and unseparated parts re-derived from the kept trace "
        "(benchmarks/reattribute_time.py)")


def _same(derived: dict[str, float | None], recorded: dict[str, float | None]) -> bool:
    def agree(new: float | None, old: float | None) -> bool:
        if new is None:  # not separable now; the older attribution wrote its empty span as 0
            return old in (None, 0.0)
        return old is not None and math.isclose(new, old, rel_tol=1e-9, abs_tol=1e-9)
    return derived.keys() == recorded.keys() and all(agree(derived[k], recorded[k]) for k in derived)


def reattribute(result_path: Path) -> str:
    """'updated', 'current' or 'skipped: why'; raises ValueError when the recomputed parts disagree."""
    data = json.loads(result_path.read_text(encoding="utf-8"))
    result = Result.from_dict(data, str(result_path))
    prof = result.profile.time if result.profile is not None else None
    if prof is None or prof.status != "ok":
        return "skipped: no time profile"
    if prof.trace_file is None or prof.trace_note:
        return f"skipped: {prof.trace_note or 'no trace kept'}"
    trace = json.loads(gzip.decompress((result_path.parent / prof.trace_file).read_bytes()))
    out = attribute_steps(trace)
    if not _same(out["parts_s"], prof.parts_s):
        raise ValueError(f"{result_path}: recomputed parts {out['parts_s']} differ from the recorded {prof.parts_s}")
    time = data["profile"]["time"]
    derived = {key: out[key] for key in NEW_FIELDS if out[key] is not None}
    if all(time.get(key) == derived.get(key) for key in NEW_FIELDS):
        return "current"
    time.update(derived)
    if NOTE not in time.get("notes", []):
        time["notes"] = [*time.get("notes", []), NOTE]
    atomic_write_json(result_path, data)
    return "updated"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="+", type=Path, help="results folders (searched for result.json)")
    args = p.parse_args(argv)
    for folder in args.dirs:
        if not folder.is_dir():
            print(f"error: {folder}: not a results folder", file=sys.stderr)
            return 2
    failed = 0
    for folder in args.dirs:
        for path in sorted(folder.rglob("result.json")):
            try:
                print(f"{path}: {reattribute(path)}")
            except ValueError as err:
                print(err, file=sys.stderr)
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
