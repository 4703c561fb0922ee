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
import shlex
import time
from pathlib import Path
from typing import Any, Iterable

from jinja2 import Environment, FileSystemLoader, select_autoescape

from harness.atomic import atomic_write_text
from harness.report import figures, tables
from harness.report.headline import headline
from harness.report.reproduce import reproduce_section
from harness.results import METRICS

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


def environment_section(records: list[dict[str, Any]]) -> dict[str, Any]:
    envs = [r.get("env") or {} for r in records]
    gits = [e.get("git") or {} for e in envs]
    commits = _distinct(f"{g.get('commit') or '?'}{' (uncommitted changes)' if g.get('dirty') else ''}"
                        for g in gits if g.get("commit"))
    weights = _distinct(((r.get("job") or {}).get("model") or {}).get("weights") for r in records)
    common = [
        ("GPU", _distinct(f"{e.get('gpu_count')}x {e.get('gpu_name')}" if e.get("gpu_count") else "none (CPU)"
                          for e in envs)),
        ("driver", _distinct(e.get("driver") for e in envs)),
        ("CUDA", _distinct(e.get("cuda") for e in envs)),
        ("machine id", _distinct(e.get("machine_id") for e in envs)),
        ("host", _distinct(e.get("hostname") for e in envs)),
        ("python", _distinct(e.get("python") for e in envs)),
        ("platform", _distinct(e.get("platform") for e in envs)),
        ("git commit", commits),
        ("model", _distinct(f"{(r.get('job') or {}).get('model', {}).get('name')} "
                            f"({(r.get('job') or {}).get('model', {}).get('hub_id')})" for r in records)),
        ("dataset", _distinct(((r.get("job") or {}).get("dataset") or {}).get("name") for r in records)),
        ("weights", weights),
        ("fairness mode", _distinct((r.get("job") or {}).get("fairness") for r in records)),
    ]
    rows = [{"name": name, "value": ", ".join(str(v) for v in vals) or "–", "varies": len(vals) > 1}
            for name, vals in common]
    frameworks = []
    for label, runs in tables.group_by_label(records).items():
        packages: dict[str, Any] = {}
        for r in runs:
            for k, v in ((r.get("framework") or {}).get("packages") or {}).items():
                packages.setdefault(k, v)
        frameworks.append({"label": label, "packages": sorted(packages.items()),
                           "python": _distinct((r.get("framework") or {}).get("python") for r in runs)})
    notes = [WEIGHTS_NOTE.get(str(w), f"Model weights: {w}.") for w in weights]
    return {"rows": rows, "frameworks": frameworks, "weights_notes": notes}


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


def checks_section(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if r.get("status") == "ok"]
    names: list[str] = []
    for r in ok:
        for c in r.get("checks") or []:
            if c.get("name") not in names:
                names.append(c.get("name"))
    rows = []
    for r in sorted(ok, key=lambda r: (tables.run_label(r), r.get("repeat") or 0)):
        by_name = {c.get("name"): c for c in r.get("checks") or []}
        cells = []
        for name in names:
            c = by_name.get(name)
            state = "na" if c is None or c.get("passed") is None else ("pass" if c.get("passed") else "fail")
            cells.append({"state": state, "detail": (c or {}).get("detail") or "not run"})
        rows.append({"run_id": r.get("run_id"), "label": tables.run_label(r), "repeat": r.get("repeat"), "cells": cells})
    return {"names": names, "rows": rows}


def _tail(text: str | None, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join((text or "").splitlines()[-lines:])


def failed_section(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"run_id": r.get("run_id"), "label": tables.run_label(r), "repeat": r.get("repeat"),
             "status": r.get("status"), "reason": r.get("reason") or "(no reason recorded)",
             "run_dir": r.get("run_dir"), "log_tail": _tail(r.get("log_tail") or r.get("traceback"))}
            for r in sorted(runs, key=lambda r: (tables.run_label(r), r.get("repeat") or 0))
            if r.get("status") != "ok"]


def _file_stem(records: list[dict[str, Any]], name: str | None, reports_dir: Path) -> str:
    if name:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "report"
        return stem[:-5] if stem.endswith(".html") else stem
    suite = re.sub(r"[^A-Za-z0-9._-]+", "-", str(records[0].get("suite") or "report")).strip(".-") or "report"
    stem = f"{suite}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, n = stem, 2
    while (reports_dir / f"{candidate}.html").exists():
        candidate, n = f"{stem}-{n}", n + 1
    return candidate


def _default_audits(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    mode = next(((r.get("job") or {}).get("fairness") for r in records if (r.get("job") or {}).get("fairness")),
                "strict")
    try:
        from harness.audit.fairness import audit_sweep
    except ImportError as err:
        return [], f"fairness audit unavailable: {err}"
    return audit_sweep(records, mode), None


def build_context(records: list[dict[str, Any]], *, audits: list[dict[str, Any]] | None, command: str | None,
                  reference: str | None, title: str) -> dict[str, Any]:
    audit_note = None
    if audits is None:
        audits, audit_note = _default_audits(records)
    audit_by_point = {str(a.get("point_hash")): a for a in audits}
    points = []
    for point_hash, runs in tables.group_by_point(records).items():
        audit = audit_by_point.get(point_hash)
        head = headline(runs, audit, reference)
        points.append({
            "point_hash": point_hash, "title": tables.point_title(runs), "headline": head,
            "table": tables.comparison_table(runs, reference),
            "runs": tables.run_rows(runs), "run_columns": tables.run_column_labels(),
            "bars": figures.bar_charts(runs), "losses": figures.loss_curves(runs),
            "memory": figures.memory_timelines(runs),
            "audit": audit_section(audit), "checks": checks_section(runs), "failed": failed_section(runs),
        })
    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r.get("status"))] = statuses.get(str(r.get("status")), 0) + 1
    created = time.strftime("%Y-%m-%d %H:%M:%S")
    meta = {"title": title, "created": created, "created_unix": time.time(), "runs": len(records),
            "statuses": statuses, "suites": _distinct(r.get("suite") for r in records),
            "frameworks": _distinct(tables.run_label(r) for r in records),
            "machines": _distinct((r.get("env") or {}).get("machine_id") for r in records),
            "fair": all(p["audit"] is None or p["audit"]["valid"] for p in points),
            "headlines": [p["headline"]["text"] for p in points]}
    return {"title": title, "created": created, "points": points, "environment": environment_section(records),
            "reproduce": reproduce_section(records, command),
            "audit_note": audit_note, "meta": meta, "statuses": statuses, "n_runs": len(records),
            "scaling": tables.scaling_table(records)}


def render_report(records: list[dict[str, Any]], reports_dir: Path, *, audits: list[dict[str, Any]] | None = None,
                  command: str | None = None, reference: str | None = None, name: str | None = None) -> Path:
    """Write one self-contained HTML report of ``records`` under ``reports_dir``; rebuild the index; return the path."""
    if not records:
        raise ValueError("no result records to report")
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    stem = _file_stem(records, name, reports_dir)
    suites = _distinct(r.get("suite") for r in records)
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
        entries.append({"file": path.name, "title": meta.get("title") or path.stem,
                        "created": meta.get("created") or time.strftime("%Y-%m-%d %H:%M:%S",
                                                                        time.localtime(path.stat().st_mtime)),
                        "sort": meta.get("created_unix") or path.stat().st_mtime,
                        "kind": meta.get("kind") or ("report" if meta else "page"),
                        "runs": meta.get("runs"), "statuses": meta.get("statuses") or {},
                        "frameworks": meta.get("frameworks") or [], "machines": meta.get("machines") or [],
                        "fair": meta.get("fair"), "headlines": meta.get("headlines") or []})
    entries.sort(key=lambda e: e["sort"], reverse=True)
    html = _env().get_template("index.html.j2").render(entries=entries, created=time.strftime("%Y-%m-%d %H:%M:%S"))
    path = reports_dir / INDEX
    atomic_write_text(path, html)
    return path


TREND_METRICS = ("tokens_per_s", "supervised_tokens_per_s", "step_time_s", "peak_mem", "torch_peak_reserved",
                 "eval_loss", "wall_time_s", "energy_per_1k_tokens", "mfu")


def render_trend(history_files: Iterable[Path], reports_dir: Path, *, name: str = "trend",
                 warn=print) -> Path:
    """A page of each metric over the history, one chart per metric and machine, one line per framework."""
    from harness.history import read_history

    by_machine: dict[str, list[dict[str, Any]]] = {}
    sources = []
    for f in history_files:
        sources.append(str(f))
        for e in read_history(Path(f), warn=warn):
            by_machine.setdefault(str(e.get("machine_id") or "unknown"), []).append(e)
    machines = []
    for machine, entries in sorted(by_machine.items()):
        ok = [e for e in entries if e.get("status") == "ok"]
        charts = []
        for key in TREND_METRICS:
            m = METRICS[key]
            if not any(isinstance(e.get(key), (int, float)) for e in ok):
                continue
            kind = "bytes" if m.unit == "bytes" else "other"
            charts.append({"label": m.label, "uri": figures.trend_chart(ok, key, m.label, kind, m.higher_is_better)})
        latest: dict[str, dict[str, Any]] = {}
        for e in sorted(entries, key=lambda e: e.get("finished_at") or 0):
            latest[f"{e.get('framework')}-{e.get('version')}"] = e
        rows = [{"label": label, "status": e.get("status"), "commit": (e.get("git_commit") or "")[:10],
                 "when": time.strftime("%Y-%m-%d %H:%M", time.localtime(float(e["finished_at"])))
                 if e.get("finished_at") else "–",
                 "tokens_per_s": tables.fmt(e.get("tokens_per_s"), "rate"),
                 "peak_mem": tables.fmt(e.get("peak_mem"), "bytes"),
                 "eval_loss": tables.fmt(e.get("eval_loss"), "loss")} for label, e in sorted(latest.items())]
        machines.append({"machine": machine, "entries": len(entries), "ok": len(ok), "charts": charts, "latest": rows})
    created = time.strftime("%Y-%m-%d %H:%M:%S")
    meta = {"title": f"history trend ({', '.join(sorted(by_machine)) or 'empty'})", "created": created,
            "created_unix": time.time(), "kind": "trend", "runs": sum(m["entries"] for m in machines),
            "machines": sorted(by_machine)}
    html = _env().get_template("trend.html.j2").render(machines=machines, sources=sources, created=created, meta=meta)
    reports_dir = Path(reports_dir)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "trend"
    path = reports_dir / f"{stem}.html"
    atomic_write_text(path, html)
    render_index(reports_dir)
    return path
