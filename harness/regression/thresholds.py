"""The checks ``field:N%`` (relative) and ``field:+X`` / ``field:-X`` (absolute): parsed against the
metric's better direction, which is data (``METRICS[field].higher_is_better``), not code."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable

from harness.results.load import METRICS


# The checks run when --check is not given. Throughput may not drop, memory and step time may not grow by
# more than 5%; eval loss (a quality guard: a faster run that learns less is no win) may not rise by 0.02.
DEFAULT_CHECKS = ("tokens_per_s:-5% supervised_tokens_per_s:-5% step_time_s:+5% "
                  "peak_mem:+5% torch_peak_reserved:+5% eval_loss:+0.02")


_CHECK_RE = re.compile(r"^(?P<field>[A-Za-z_][A-Za-z0-9_]*):(?P<sign>[+-])?"
                       r"(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(?P<percent>%)?$")


EPS = 1e-9


class CompareError(Exception):
    """Bad input (syntax, unknown metric, missing or foreign baseline): exit 2 with this one line."""


@dataclass(frozen=True)
class Check:
    metric: str
    amount: float  # tolerated change in the bad direction: percent when ``relative``, else metric units
    relative: bool
    text: str

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric].higher_is_better

    @property
    def threshold(self) -> str:
        sign = "-" if self.higher_is_better else "+"
        return f"{sign}{self.amount:g}%" if self.relative else f"{sign}{self.amount:g}"

    def change(self, baseline: float, current: float) -> float:
        """Signed change in this check's units: percent of the baseline when relative, else absolute."""
        delta = current - baseline
        if not self.relative:
            return delta
        if baseline == 0:
            return 0.0 if delta == 0 else math.copysign(math.inf, delta)
        return 100.0 * delta / abs(baseline)

    def worsening(self, baseline: float, current: float) -> float:
        """How much worse (positive) or better (negative) current is, in this check's units."""
        change = self.change(baseline, current)
        return -change if self.higher_is_better else change


def parse_checks(spec: str | Iterable[str]) -> list[Check]:
    """``"tokens_per_s:-5% eval_loss:+0.02"`` (or a list of such strings) -> checks.

    Raises CompareError naming the offending check: bad syntax, unknown metric, a sign that contradicts
    the metric's direction, or a metric checked twice."""
    texts = spec.split() if isinstance(spec, str) else [t for s in spec for t in s.split()]
    checks: dict[str, Check] = {}
    for text in texts:
        match = _CHECK_RE.match(text)
        if not match:
            raise CompareError(f"bad check {text!r}: write FIELD:N% (relative) or FIELD:+X / FIELD:-X "
                               f"(absolute), e.g. tokens_per_s:-5% eval_loss:+0.02")
        name = match["field"]
        if name not in METRICS:
            raise CompareError(f"bad check {text!r}: unknown metric {name!r} (known: {', '.join(METRICS)})")
        amount = float(match["number"])
        if not math.isfinite(amount):
            raise CompareError(f"bad check {text!r}: the tolerance must be a finite number")
        higher = METRICS[name].higher_is_better
        bad_sign = "-" if higher else "+"
        if match["sign"] and match["sign"] != bad_sign:
            direction = "higher" if higher else "lower"
            raise CompareError(f"bad check {text!r}: {name} is better {direction}, so its bad direction is "
                               f"{bad_sign}: write {name}:{bad_sign}{match['number']}{match['percent'] or ''}")
        if name in checks:
            raise CompareError(f"bad check {text!r}: {name} is checked twice")
        checks[name] = Check(name, amount, bool(match["percent"]), text)
    if not checks:
        raise CompareError("bad check '': no check given")
    return list(checks.values())
