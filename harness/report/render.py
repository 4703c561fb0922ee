"""Render the HTML report of a set of results, the index of all reports, and the history trend page.

Everything the page shows is computed here into plain data and laid out by the jinja2 templates in
``templates/`` (autoescape on: every string from a result, a log or a config is escaped there; no HTML
is built in Python). Figures are embedded as base64 PNG, so a report is one file that opens offline.
Each report carries its own summary as JSON (``<script type="application/json" id="harness-meta">``),
which is all :func:`render_index` needs to list it.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Iterable

from jinja2 import Environment, FileSystemLoader, select_autoescape

from harness.atomic import atomic_write_text
from harness.report import figures, tables
from harness.report.disclosures import host_sentence
from harness.report.headline import headline
from harness.records import Result
from harness.records.machine import Env, Git
from harness.report.repeat_spread import spread_section
from harness.report.reproduce import reproduce_section
from harness.report.why import why_sections
from harness.results import flatten

TEMPLATES = Path(__file__).parent / "templates"
INDEX = "index.html"
TREND = "trend.html"
LOG_TAIL_LINES = 60
VALUE_CHARS = 160
META_RE = re.compile(r'<script type="application/json" id="harness-meta">(.*?)</script>', re.S)
WEIGHTS_NOTE = {
    "random": "The model was randomly initialised (same seed, same files for every framework): its eval losses "
              "are comparable across the frameworks in this report, but not with a pretrained model's.",
    "pretrained": "The model started from pretrained weights: eval losses are comparable across frameworks "
                  "and with other runs of the same pretrained model.",
}


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(default=True,
                      default_for_string=True), trim_blocks=True, lstrip_blocks=True)
    return env


def _distinct(values: Iterable[Any]) -> list[Any]:
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


def _joined(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values) or NOT_RECORDED


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


def environment_section(records: list[Result]) -> dict[str, Any]:
    envs = [r.env for r in records]
    weights = _distinct(r.job.model.weights for r in records)
    common = [
        ("GPU (seen by the run)", _distinct(f"{e.gpu_count}x {e.gpu_name}" if e.gpu_count else "none (CPU)"
                                            for e in envs)),
        ("GPU driver", _distinct(e.driver or (NOT_RECORDED if e.gpu_count else "none") for e in envs)),
        ("CUDA", _distinct(_cuda_text(r.env, r.framework.packages or {}) for r in records)),
        ("CUDA_VISIBLE_DEVICES", _distinct(e.cuda_visible_devices or "not set" for e in envs)),
        ("host activity", _distinct(host_sentence(r) or ("no other work recorded" if r.host is not None
                                                         and r.host.to_dict() else NOT_RECORDED)
                                    for r in records if r.ok) or [NOT_RECORDED]),
        ("machine id", _distinct(e.machine_id or NOT_RECORDED for e in envs)),
        ("host name", _distinct(e.hostname or NOT_RECORDED for e in envs)),
        ("CPU cores", _distinct(e.cpu_count or NOT_RECORDED for e in envs)),
        ("python (harness)", _distinct(e.python or NOT_RECORDED for e in envs)),
        ("platform", _distinct(e.platform or NOT_RECORDED for e in envs)),
        ("harness commit", _distinct(_git_text(e.git) for e in envs)),
        ("model", _distinct(f"{r.job.model.name} ({r.job.model.hub_id})" for r in records)),
        ("dataset", _distinct(f"{r.job.dataset.name} (digest {r.job.dataset.digest or NOT_RECORDED})"
                              for r in records)),
        ("weights", weights or [NOT_RECORDED]),
        ("fairness mode", _distinct(r.job.fairness or NOT_RECORDED for r in records)),
        ("results", _distinct(_results_folder(r) for r in records)),
    ]
    rows = [{"name": name, "value": _joined(vals), "varies": len(vals) > 1} for name, vals in common]
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


def _file_stem(records: list[Result], name: str | None, reports_dir: Path) -> str:
    if name:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "report"
        return stem[:-5] if stem.endswith(".html") else stem
    suites = [str(x) for x in _distinct(r.suite for r in records)] or ["report"]
    # A report of several suites is named after all of them (or how many), never after the first alone.
    label = "+".join(suites) if len(suites) <= 3 else f"{len(suites)}-suites"
    suite = re.sub(r"[^A-Za-z0-9._+-]+", "-", label).strip(".-") or "report"
    stem = f"{suite}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, n = stem, 2
    while (reports_dir / f"{candidate}.html").exists():
        candidate, n = f"{stem}-{n}", n + 1
    return candidate


def _default_audits(records: list[Result]) -> tuple[list[dict[str, Any]], str | None]:
    mode = next((r.job.fairness for r in records if r.job.fairness), "strict")
    try:
        from harness.audit.fairness import audit_sweep
    except ImportError as err:
        return [], f"fairness audit unavailable: {err}"
    return audit_sweep(records, mode), None


def build_context(records: list[Result], *, audits: list[dict[str, Any]] | None, command: str | None,
                  reference: str | None, title: str) -> dict[str, Any]:
    audit_note = None
    if audits is None:
        audits, audit_note = _default_audits(records)
    audit_by_point = {str(a.get("point_hash")): a for a in audits}
    # Profiled runs (profile=memory|time) explain a point; they never enter its tables, headline or charts.
    why = why_sections([r for r in records if r.profiled], run_folder)
    points = []
    for point_hash, runs in tables.group_by_point([r for r in records if not r.profiled]).items():
        audit = audit_by_point.get(point_hash)
        head = headline(runs, audit, reference)
        run_rows = tables.run_rows(runs)
        for row, r in zip(run_rows, sorted(runs, key=tables.by_label_and_repeat)):
            row["run_dir"] = run_folder(r)
        points.append({
            "point_hash": point_hash, "title": tables.point_title(runs), "headline": head,
            "table": tables.comparison_table(runs, reference),
            "runs": run_rows, "run_columns": tables.run_column_labels(),
            "bars": figures.bar_charts(runs), "losses": figures.loss_curves(runs),
            "steps": figures.step_throughput(runs), "tradeoff": figures.memory_vs_speed(runs),
            "memory": figures.memory_timelines(runs), "spread": spread_section(runs),
            "audit": audit_section(audit), "checks": checks_section(runs), "failed": failed_section(runs),
            "why": why.pop(point_hash, None),
        })
    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
    created = time.strftime("%Y-%m-%d %H:%M:%S")
    finished = [t for t in (r.phases.get("result_written") for r in records) if isinstance(t, (int, float))]
    meta = {"title": title, "created": created, "created_unix": time.time(), "runs": len(records),
            "statuses": statuses, "suites": _distinct(r.suite for r in records),
            "models": _distinct(r.job.model.name for r in records),
            "frameworks": _distinct(tables.run_label(r) for r in records),
            "machines": _distinct(r.env.machine_id for r in records),
            "gpus": _distinct(f"{tables.world_size_of(r)}x {r.env.gpu_name or 'CPU'}" for r in records),
            "runs_from": min(finished) if finished else None, "runs_to": max(finished) if finished else None,
            "fair": all(p["headline"]["fair"] is not False for p in points),
            "fair_points": [{"title": p["title"], "fair": p["headline"]["fair"], "kind": p["headline"]["kind"],
                             "clauses": p["headline"]["clauses"] or [p["headline"]["text"][:200]]} for p in points],
            "headlines": [p["headline"]["text"] for p in points]}
    return {"title": title, "created": created, "points": points, "environment": environment_section(records),
            "reproduce": reproduce_section(records, command), "definitions": definitions(records),
            "downloads": downloads(records),
            "audit_note": audit_note, "meta": meta, "statuses": statuses, "n_runs": len(records),
            "scaling": tables.scaling_table([r for r in records if not r.profiled]),
            "why_only": list(why.values())}  # profiled points whose unprofiled runs are not in this report


def definitions(records: list[Result]) -> dict[str, Any]:
    """The numbers the glossary needs: warm-up and timed steps, the MFU peak, as recorded."""
    ok = [r for r in records if r.ok]
    trains = [r.train for r in ok if r.train is not None]
    peaks = [r.mfu.peak_flops_per_s for r in ok if r.mfu is not None]
    intervals = [r.memory.nvml_interval_s for r in ok]
    return {"warmup": _distinct(t.steps - t.timed_steps for t in trains
                                if isinstance(t.steps, int) and isinstance(t.timed_steps, int)),
            "timed": _distinct(t.timed_steps for t in trains),
            "steps": _distinct(t.steps for t in trains),
            "peak_flops": _distinct(f"{p / 1e12:.0f} TFLOP/s" for p in peaks if isinstance(p, (int, float))),
            "interval_ms": _distinct(round(i * 1000) for i in intervals if isinstance(i, (int, float)))}


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


def render_report(records: list[Result], reports_dir: Path, *, audits: list[dict[str, Any]] | None = None,
                  command: str | None = None, reference: str | None = None, name: str | None = None) -> Path:
    """Write one self-contained HTML report of ``records`` under ``reports_dir``; rebuild the index; return the path."""
    if not records:
        raise ValueError("no result records to report")
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    stem = _file_stem(records, name, reports_dir)
    suites = _distinct(r.suite for r in records)
    title = f"{', '.join(map(str, suites)) or 'benchmark'}: {', '.join(_distinct(tables.run_label(r) for r in records))}"
    context = build_context(records, audits=audits, command=command, reference=reference, title=title)
    context["meta"]["file"] = f"{stem}.html"
    html = _env().get_template("report.html.j2").render(**context)
    path = reports_dir / f"{stem}.html"
    atomic_write_text(path, html)
    render_index(reports_dir)
    return path


def read_meta(path: Path) -> dict[str, Any] | None:
    try:
        match = META_RE.search(Path(path).read_text(encoding="utf-8", errors="replace"))
        return json.loads(match.group(1)) if match else None
    except (OSError, ValueError):
        return None


def render_index(reports_dir: Path) -> Path:
    """``reports_dir/index.html``: every report in the folder, newest first, with its verdict and headlines."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for path in reports_dir.glob("*.html"):
        if path.name in (INDEX,):
            continue
        meta = read_meta(path) or {}
        span = [meta.get("runs_from"), meta.get("runs_to")]
        dates = sorted({time.strftime("%Y-%m-%d", time.gmtime(t)) for t in span if isinstance(t, (int, float))})
        entries.append({"file": path.name, "title": meta.get("title") or path.stem,
                        "created": meta.get("created") or time.strftime("%Y-%m-%d %H:%M:%S",
                                                                        time.localtime(path.stat().st_mtime)),
                        "sort": (meta.get("runs_to") or meta.get("created_unix") or path.stat().st_mtime),
                        "kind": meta.get("kind") or ("report" if meta else "page"),
                        "runs": meta.get("runs"), "statuses": meta.get("statuses") or {},
                        "suites": meta.get("suites") or [], "models": meta.get("models") or [],
                        "gpus": meta.get("gpus") or [], "dates": " – ".join(dates) or "not recorded",
                        "frameworks": meta.get("frameworks") or [], "machines": meta.get("machines") or [],
                        "fair": meta.get("fair"), "points": meta.get("fair_points") or [],
                        "headlines": meta.get("headlines") or []})
    entries.sort(key=lambda e: e["sort"], reverse=True)
    html = _env().get_template("index.html.j2").render(entries=entries, created=time.strftime("%Y-%m-%d %H:%M:%S"))
    path = reports_dir / INDEX
    atomic_write_text(path, html)
    return path


def render_trend(history_files: Iterable[Path], reports_dir: Path, *, name: str = "trend", warn=print) -> Path:
    """The trend page (harness/report/trend.py) of the history files; rebuilds the index."""
    from harness.report.trend import trend_context

    context = trend_context(history_files, warn=warn)
    created = time.strftime("%Y-%m-%d %H:%M:%S")
    names = [m["machine"] for m in context["machines"]]
    meta = {"title": f"history trend ({', '.join(names) or 'empty'})", "created": created,
            "created_unix": time.time(), "kind": "trend", "runs": context["runs"], "machines": names,
            "headlines": [f"{sum(len(m['points']) for m in context['machines'])} series groups; "
                          f"{sum(r['regression'] for m in context['machines'] for p in m['points'] for r in p['rows'])}"
                          f" run(s) beyond a compare threshold"]}
    html = _env().get_template("trend.html.j2").render(**context, created=created, meta=meta)
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "trend"
    path = reports_dir / f"{stem}.html"
    atomic_write_text(path, html)
    render_index(reports_dir)
    return path
