"""``reports/index.html``: every report in the folder, newest first, listed from the summary each report
carries as JSON (``<script type="application/json" id="harness-meta">``)."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from harness.atomic import atomic_write_text
from harness.report.jinja import jinja_env


INDEX = "index.html"


META_RE = re.compile(r'<script type="application/json" id="harness-meta">(.*?)</script>', re.S)


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
    html = jinja_env().get_template("index.html.j2").render(entries=entries, created=time.strftime("%Y-%m-%d %H:%M:%S"))
    path = reports_dir / INDEX
    atomic_write_text(path, html)
    return path
