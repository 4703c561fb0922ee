"""The memory timeline of a run: one point per device and tick, bounded in size by max-merging pairs (so
short peaks survive downsampling), and its CSV file (memory_timeline.csv.gz, read by the report's figures)."""
from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path
from typing import IO, Any, Iterable

# One timeline point of one device: (t, used_bytes, util_pct, power_w, process_bytes); None = not read.
Sample = tuple[float, "int | None", "int | None", "float | None", "int | None"]


def max_opt(a: Any, b: Any) -> Any:
    """The larger of two readings, either of which may be missing (None)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if a >= b else b


def merge_max(a: Sample, b: Sample) -> Sample:
    """Merge two consecutive points into one: the earlier time, the max of every value (None-aware)."""
    return (a[0],) + tuple(max_opt(x, y) for x, y in zip(a[1:], b[1:]))  # type: ignore[return-value]


def downsample_max_pairs(samples: list[Sample]) -> list[Sample]:
    """Halve a timeline by keeping the max of each consecutive pair, so short memory peaks survive
    (plain decimation would drop every other point and could drop the peak). An odd last point is kept."""
    out = [merge_max(samples[i], samples[i + 1]) for i in range(0, len(samples) - 1, 2)]
    if len(samples) % 2:
        out.append(samples[-1])
    return out


class BoundedTimeline:
    """A timeline that never grows beyond ``cap`` points: when full it halves itself (pair max) and from
    then on folds ``stride`` raw samples into each point, so resolution stays uniform over the run."""

    def __init__(self, cap: int) -> None:
        self.cap = max(2, int(cap))
        self.points: list[Sample] = []
        self.stride = 1
        self._pending: Sample | None = None
        self._pending_n = 0

    def add(self, sample: Sample) -> None:
        self._pending = sample if self._pending is None else merge_max(self._pending, sample)
        self._pending_n += 1
        if self._pending_n >= self.stride:
            self.points.append(self._pending)
            self._pending, self._pending_n = None, 0
            if len(self.points) >= self.cap:
                self.points = downsample_max_pairs(self.points)
                self.stride *= 2

    def all(self) -> list[Sample]:
        return self.points + ([self._pending] if self._pending is not None else [])


def open_text(path: Path, mode: str) -> IO[str]:
    """A text handle on ``path``, gzip-compressed when its name ends in .gz (mtime 0: the same samples give
    the same bytes)."""
    if path.suffix == ".gz":
        raw = gzip.GzipFile(path, mode + "b", mtime=0)
        return io.TextIOWrapper(raw, encoding="utf-8", newline="")
    return open(path, mode, encoding="utf-8", newline="")


TIMELINE_COLUMNS = ["t", "device", "used_bytes", "util", "power_w", "process_bytes"]


def write_timeline_csv(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """CSV t,device,used_bytes,util,power_w,process_bytes (t: unix seconds, 3 decimals); an empty reading
    is an empty cell. Written with its header even without rows, so readers need no special case."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_text(path, "w") as fh:
        writer = csv.writer(fh)
        writer.writerow(TIMELINE_COLUMNS)
        for r in rows:
            writer.writerow([f"{r['t']:.3f}", r["device"], "" if r["used_bytes"] is None else r["used_bytes"],
                             "" if r["util"] is None else r["util"],
                             "" if r["power_w"] is None else f"{r['power_w']:.1f}",
                             "" if r["process_bytes"] is None else r["process_bytes"]])
