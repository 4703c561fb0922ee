"""The sections of one report as plain data for the template: the environment, the audit, the cross-checks,
the failed runs, the glossary's numbers and the downloads (CSV / JSON of every run)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from harness.report import tables
from harness.report.disclosures import host_sentence
from harness.records import Result
from harness.records.machine import Env, Git
from harness.results.load import flatten


LOG_TAIL_LINES = 60


VALUE_CHARS = 160


WEIGHTS_NOTE = {
    "random": "The model was randomly initialised (same seed, same files for every framework): its eval losses "
              "are comparable across the frameworks in this report, but not with a pretrained model's.",
    "pretrained": "The model started from pretrained weights: eval losses are comparable across frameworks "
                  "and with other runs of the same pretrained model.",
}


def distinct(values: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if v not in (None, "") and v not in out:
            out.append(v)
    return out


def _short(value: Any) -> tuple[str, str]:
    """(shown, full) text of an audit value: JSON, shortened past VALUE_CHARS."""
    full = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return (full if len(full) <= VALUE_CHARS else full[:VALUE_CHARS] + "…"), full


NOT_RECORDED = "not recorded"


def relative_path(path: str | Path | None) -> str:
    """A path as the reader can use it: relative to the working directory where it lies below it, else as
    given (never the absolute path of the machine that rendered the report, when it can be avoided)."""
    if not path:
        return NOT_RECORDED
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def run_folder(record: Result) -> str:
    """Where the run's files are now (beside the result.json read), relative where possible."""
    return relative_path(Path(record.source).parent) if record.source else relative_path(record.run_dir)


def _git_text(git: Git) -> str:
    if not git.commit:
        return NOT_RECORDED
    dirty = git.dirty
    state = {True: "with uncommitted changes in the checkout at run time", False: "clean checkout",
             None: "checkout state not recorded"}[dirty if dirty in (True, False) else None]
    return f"{str(git.commit)[:12]} ({state})"


def _cuda_text(env: Env, packages: dict[str, Any]) -> str:
    parts = []
    if env.cuda:
        parts.append(f"CUDA {env.cuda}")
    if env.cuda_driver_version:
        parts.append(f"driver supports CUDA {env.cuda_driver_version}")
    if packages.get("torch"):
        parts.append(f"torch {packages['torch']} (its CUDA build: {env.torch_cuda or NOT_RECORDED})")
    if not env.gpu_count:
        return "none (CPU run)"
    return "; ".join(parts) or NOT_RECORDED


def _results_folder(record: Result) -> str:
    """The results folder a run was read from (``results/h200`` for ``results/h200/SUITE/POINT/RUN/rN``)."""
    if record.source and len(Path(record.source).parents) > 3:
        return relative_path(Path(record.source).parents[3])
    return NOT_RECORDED


def _host_activity(records: list[Result]) -> list[str]:
    """What else ran on the host, once when every run saw the same; else per run, named (unnamed, four
    sentences about CPU load could not be told apart)."""
    def sentence(r: Result) -> str:
        return host_sentence(r) or ("no other work recorded" if r.host is not None and r.host.to_dict()
                                    else NOT_RECORDED)

    runs = sorted((r for r in records if r.ok), key=tables.by_label_and_repeat)
    if len(distinct(sentence(r) for r in runs)) <= 1:
        return distinct(sentence(r) for r in runs) or [NOT_RECORDED]
    several = len({r.label for r in runs}) < len(runs)
    return [f"{r.label}{f' r{r.repeat or 0}' if several else ''}: {sentence(r)}" for r in runs]


def environment_section(records: list[Result]) -> dict[str, Any]:
    envs = [r.env for r in records]
    weights = distinct(r.job.model.weights for r in records)
    common = [
        ("GPU (seen by the run)", distinct(f"{e.gpu_count}x {e.gpu_name}" if e.gpu_count else "none (CPU)"
                                            for e in envs)),
        ("GPU driver", distinct(e.driver or (NOT_RECORDED if e.gpu_count else "none") for e in envs)),
        ("CUDA", distinct(_cuda_text(r.env, r.framework.packages or {}) for r in records)),
        ("CUDA_VISIBLE_DEVICES", distinct(e.cuda_visible_devices or "not set" for e in envs)),
        ("host activity", _host_activity(records)),
        ("machine id", distinct(e.machine_id or NOT_RECORDED for e in envs)),
        ("host name", distinct(e.hostname or NOT_RECORDED for e in envs)),
        ("CPU cores", distinct(e.cpu_count or NOT_RECORDED for e in envs)),
        ("python (harness)", distinct(e.python or NOT_RECORDED for e in envs)),
        ("platform", distinct(e.platform or NOT_RECORDED for e in envs)),
        ("harness commit", distinct(_git_text(e.git) for e in envs)),
        ("model", distinct(f"{r.job.model.name} ({r.job.model.hub_id})" for r in records)),
        ("dataset", distinct(f"{r.job.dataset.name} (digest {r.job.dataset.digest or NOT_RECORDED})"
                              for r in records)),
        ("weights", weights or [NOT_RECORDED]),
        ("fairness mode", distinct(r.job.fairness or NOT_RECORDED for r in records)),
        ("recipe", distinct(r.recipe_name for r in records)),
        ("results", distinct(_results_folder(r) for r in records)),
    ]
    rows = [{"name": name, "value": ", ".join(str(v) for v in vals) or NOT_RECORDED, "varies": len(vals) > 1}
            for name, vals in common]
    for row, (name, vals) in zip(rows, common):
        if name == "host activity" and len(vals) > 1:
            row["lines"] = [str(v) for v in vals]  # one sentence per run: their own commas and semicolons stay readable
    frameworks = []
    for label, runs in tables.group_by_label(records).items():
        packages: dict[str, Any] = {}
        for r in runs:
            for k, v in (r.framework.packages or {}).items():
                packages.setdefault(k, v)
        shown = [(k, v if v is not None else "not installed") for k, v in sorted(packages.items())]
        frameworks.append({"label": label, "packages": shown})
    notes = [WEIGHTS_NOTE.get(str(w), f"Model weights: {w}.") for w in weights]
    dirty = any(e.git.dirty for e in envs)
    return {"rows": rows, "frameworks": frameworks, "weights_notes": notes, "dirty": dirty}


def audit_section(audit: dict[str, Any] | None) -> dict[str, Any] | None:
    if audit is None:
        return None
    labels = list(audit.get("labels") or sorted({l for f in audit.get("fields") or [] for l in f.get("values", {})}))
    differing, matching = [], []
    for f in audit.get("fields") or []:
        cells = []
        for label in labels:
            shown, full = _short((f.get("values") or {}).get(label))
            cells.append({"text": shown, "full": full})
        row = {"field": f.get("field"), "strict": bool(f.get("strict")), "match": bool(f.get("match")),
               "cells": cells, "klass": "ok" if f.get("match") else ("mismatch" if f.get("strict") else "info")}
        (matching if f.get("match") else differing).append(row)
    differing.sort(key=lambda row: (not row["strict"], row["field"]))
    notes = [{"label": label, "lines": lines} for label, lines in (audit.get("notes") or {}).items() if lines]
    return {"valid": audit.get("valid", True), "mode": audit.get("mode"), "labels": labels,
            "differing": differing, "matching": matching, "skipped": audit.get("skipped") or [],
            "missing_audit": audit.get("missing_audit") or [],
            "repeat_mismatches": [{"label": m.get("label"), "field": m.get("field"),
                                   "values": _short(m.get("values"))[0]} for m in audit.get("repeat_mismatches") or []],
            "notes": notes}


def checks_section(runs: list[Result]) -> dict[str, Any]:
    ok = [r for r in runs if r.ok]
    names: list[str] = []
    for r in ok:
        for c in r.checks:
            if c.name not in names:
                names.append(c.name)
    # a check no run here could judge (recorded before it existed, or n/a everywhere) is a column of n/a: left out
    names = [n for n in names if any(c.name == n and c.passed is not None for r in ok for c in r.checks)]
    rows = []
    for r in sorted(ok, key=tables.by_label_and_repeat):
        by_name = {c.name: c for c in r.checks}
        cells = []
        for name in names:
            c = by_name.get(name)
            state = "na" if c is None or c.passed is None else ("pass" if c.passed else "fail")
            cells.append({"state": state, "detail": (c.detail if c is not None else None) or "not run"})
        rows.append({"run_id": r.run_id, "label": tables.run_label(r), "repeat": r.repeat, "cells": cells})
    return {"names": names, "rows": rows}


def _tail(text: str | None, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join((text or "").splitlines()[-lines:])


def failed_section(runs: list[Result]) -> list[dict[str, Any]]:
    return [{"run_id": r.run_id, "label": tables.run_label(r), "repeat": r.repeat,
             "status": r.status, "reason": r.reason or "(no reason recorded)",
             "run_dir": run_folder(r), "log_tail": _tail(r.log_tail or r.traceback)}
            for r in sorted(runs, key=tables.by_label_and_repeat)
            if not r.ok]


def definitions(records: list[Result]) -> dict[str, Any]:
    """The numbers the glossary needs: warm-up and timed steps, the MFU peak, as recorded."""
    ok = [r for r in records if r.ok]
    trains = [r.train for r in ok if r.train is not None]
    peaks = [r.mfu.peak_flops_per_s for r in ok if r.mfu is not None]
    intervals = [r.memory.nvml_interval_s for r in ok]
    return {"warmup": distinct(t.steps - t.timed_steps for t in trains
                                if isinstance(t.steps, int) and isinstance(t.timed_steps, int)),
            "timed": distinct(t.timed_steps for t in trains),
            "steps": distinct(t.steps for t in trains),
            "peak_flops": distinct(f"{p / 1e12:.0f} TFLOP/s" for p in peaks if isinstance(p, (int, float))),
            "interval_ms": distinct(round(i * 1000) for i in intervals if isinstance(i, (int, float)))}


def downloads(records: list[Result]) -> dict[str, str]:
    """The report's rows (one per run, every metric) as CSV and JSON data URIs: offline, no server."""
    import base64

    import pandas as pd

    rows = []
    for r in records:
        row = flatten(r)
        row["run_dir"] = run_folder(r)
        row["run_peak_mem"] = r.memory.nvml_run_peak_bytes
        row["framework_eval_loss"] = r.eval.framework_loss if r.eval is not None else None
        row["world_size"] = tables.world_size_of(r)
        row["git_commit"] = r.env.git.commit
        row["git_dirty"] = r.env.git.dirty
        row["profile"] = r.profiled  # memory | time: not comparable for speed with unprofiled rows
        rows.append(row)
    csv_text = pd.DataFrame(rows).to_csv(index=False)
    json_text = json.dumps(rows, indent=1, default=str)
    return {"csv": "data:text/csv;base64," + base64.b64encode(csv_text.encode()).decode("ascii"),
            "json": "data:application/json;base64," + base64.b64encode(json_text.encode()).decode("ascii"),
            "rows": str(len(rows))}
