"""``python -m harness audit [RESULTS...] [--fairness strict|native] [--out FILE]``: the fairness audit
of finished runs, per sweep point, from the live-object fields each result carries.

Exit 0 when every point is fair, 3 when a strict comparison is refused, 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.audit.fairness import audit_sweep, write_audit
from harness.cli.args import RESULTS_HELP, OneLineParser, parse, resolve_results
from harness.results.load import load_records


def main(argv: list[str]) -> int:
    parser = OneLineParser(prog="python -m harness audit", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="*", type=Path, default=[], help=RESULTS_HELP)
    parser.add_argument("--fairness", choices=("strict", "native"), default="strict")
    parser.add_argument("--out", type=Path, help="write the audit as JSON here")
    args = parse(parser, argv)
    if isinstance(args, int):
        return args
    args.results = resolve_results(args.results)
    missing = [str(p) for p in args.results if not p.exists()]
    if missing:
        print(f"error: no such results: {', '.join(missing)}", file=sys.stderr)
        return 2
    records = load_records(args.results)
    if not records:
        print("error: no result.json found under " + ", ".join(map(str, args.results)), file=sys.stderr)
        return 2
    from harness.audit.recipe_audit import summary_lines

    audits = audit_sweep(records, args.fairness)
    for audit in audits:
        labels = ", ".join(audit.get("labels") or [])
        # one framework at a point has nothing to be fair against: say so, not a vacuous "fair"
        verdict = ("fair" if audit["valid"] else "NOT FAIR") if len(audit.get("labels") or []) > 1 else \
            "nothing compared (one framework)"

        print(f"point {audit['point_hash']} ({labels}): {verdict} in {audit.get('mode', args.fairness)} mode")
        for line in summary_lines(audit):
            print(f"  {line}")
        for field in audit["fields"]:
            if not field["match"]:
                kind = "strict" if field["strict"] else "info"
                print(f"  {kind:6s} {field['field']}: {json.dumps(field['values'], default=str)}")
    if args.out:
        write_audit(args.out, audits)
        print(f"audit: {args.out}")
    return 0 if all(a["valid"] for a in audits) else 3
