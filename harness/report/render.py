"""Render the HTML report of a set of results, the index of all reports, and the history trend page.

Everything the page shows is computed here into plain data and laid out by the jinja2 templates in
``templates/`` (autoescape on: every string from a result, a log or a config is escaped there; no HTML
is built in Python). Figures are embedded as base64 PNG, so a report is one file that opens offline.
Each report carries its own summary as JSON (``<script type="application/json" id="harness-meta">``),
which is all :func:`render_index` needs to list it."""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Iterable

from harness.atomic import atomic_write_text
from harness.report import figures, tables
from harness.report.headline import headline
from harness.records import Result
from harness.report.repeat_spread import spread_section
from harness.report.reproduce import reproduce_section
from harness.report.why import why_sections
from harness.report.recipe_section import recipe_sections
from harness.report.jinja import jinja_env
from harness.report.memory_figure import memory_timelines
from harness.report.sections import (audit_section, checks_section, definitions, distinct, downloads,
                                     environment_section, failed_section, run_folder)
from harness.report.index_page import render_index


TREND = "trend.html"


def _file_stem(records: list[Result], name: str | None, reports_dir: Path) -> str:
    if name:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "report"
        return stem[:-5] if stem.endswith(".html") else stem
    suites = [str(x) for x in distinct(r.suite for r in records)] or ["report"]
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
    why = why_sections(records, run_folder)
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
            "same_losses": figures.coinciding_losses(runs),
            "steps": figures.step_throughput(runs), "tradeoff": figures.memory_vs_speed(runs),
            "memory": memory_timelines(runs), "spread": spread_section(runs),
            "audit": audit_section(audit), "checks": checks_section(runs), "failed": failed_section(runs),
            "why": why.pop(point_hash, None),
        })
    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
    created = time.strftime("%Y-%m-%d %H:%M:%S")
    finished = [t for t in (r.phases.get("result_written") for r in records) if isinstance(t, (int, float))]
    meta = {"title": title, "created": created, "created_unix": time.time(), "runs": len(records),
            "statuses": statuses, "suites": distinct(r.suite for r in records),
            "models": distinct(r.job.model.name for r in records),
            "frameworks": distinct(tables.run_label(r) for r in records),
            "machines": distinct(r.env.machine_id for r in records),
            "gpus": distinct(f"{tables.world_size_of(r)}x {r.env.gpu_name or 'CPU'}" for r in records),
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
            "why_only": list(why.values()),  # profiled points whose unprofiled runs are not in this report
            "recipes": recipe_sections(records, audits, reference)}  # identical vs recommended (issue 17)


def render_report(records: list[Result], reports_dir: Path, *, audits: list[dict[str, Any]] | None = None,
                  command: str | None = None, reference: str | None = None, name: str | None = None) -> Path:
    """Write one self-contained HTML report of ``records`` under ``reports_dir``; rebuild the index; return the path."""
    if not records:
        raise ValueError("no result records to report")
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    stem = _file_stem(records, name, reports_dir)
    suites = distinct(r.suite for r in records)
    title = f"{', '.join(map(str, suites)) or 'benchmark'}: {', '.join(distinct(tables.run_label(r) for r in records))}"
    context = build_context(records, audits=audits, command=command, reference=reference, title=title)
    context["meta"]["file"] = f"{stem}.html"
    html = jinja_env().get_template("report.html.j2").render(**context)
    path = reports_dir / f"{stem}.html"
    atomic_write_text(path, html)
    render_index(reports_dir)
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
    html = jinja_env().get_template("trend.html.j2").render(**context, created=created, meta=meta)
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "trend"
    path = reports_dir / f"{stem}.html"
    atomic_write_text(path, html)
    render_index(reports_dir)
    return path
