"""The audit and the report of recommended recipes on hand-built results (known answers): each framework against
its identical twin, the quality verdict and its tolerance, task fields refusing a point, and the report's
side-by-side section and headline (rendered, then read back from the HTML)."""
from __future__ import annotations

import re

import pytest

from harness.audit.fairness import audit_sweep
from harness.audit.recipe_audit import EVAL_LOSS_TOL, quality, tolerance, twin_differences
from harness.records import Result
from tests.report.test_report import make_record

IDENTICAL_AUDIT = {"padding_free": False, "padded_lengths": [120, 112], "pad_to_multiple_of": 8,
                   "optimizer_options": {"fused": None}, "first_batches_multiset_hash": "same"}
FEATURES = [
    {"id": "padding_free", "status": "active", "changes": "impl", "fields": ["padding_free", "padded_lengths"],
     "what": "one row", "source": "https://x", "evidence": "rows 1"},
    {"id": "liger", "status": "unavailable", "changes": "impl", "fields": [], "reason": "needs cuda, this run is on cpu",
     "what": "kernels", "source": "https://y"},
]


def pair(framework: str, version: str, *, tps: float, rec_tps: float, loss: float, rec_loss: float, repeats: int = 1,
         rec_audit: dict | None = None, mem: float = 4 * 2**30, rec_mem: float = 3 * 2**30) -> list[Result]:
    out = []
    for repeat in range(repeats):
        ident = make_record(framework, version, repeat, tps=tps, loss=loss + 1e-4 * repeat, mem=mem, point_hash="pointident")
        ident.job_hash = f"{framework}-identical"
        ident.audit = ident.audit.from_dict({**ident.audit.to_dict(), **IDENTICAL_AUDIT})
        rec = make_record(framework, version, repeat, tps=rec_tps, loss=rec_loss + 1e-4 * repeat, mem=rec_mem,
                          point_hash="pointrecom")
        rec.job_hash, rec.run_id = f"{framework}-recommended", rec.run_id + "rec"
        data = rec.to_dict()
        data["job"]["recipe"] = {"name": "recommended", "packing": "framework"}
        data["recipe"] = {"name": "recommended", "packing": "framework", "features": FEATURES, "always_on": [],
                          "identical_job_hash": ident.job_hash, "identical_point_hash": "pointident"}
        data["audit"] = {**ident.audit.to_dict(), "padding_free": True, "padded_lengths": [232],
                         "pad_to_multiple_of": 8, **(rec_audit or {})}
        data["train"]["supervised_tokens_per_s"] = rec_tps * 0.44
        out += [ident, Result.from_dict(data)]
    return out


def test_twin_differences_are_tagged_by_the_feature_that_declares_them():
    rows = twin_differences(IDENTICAL_AUDIT, {**IDENTICAL_AUDIT, "padding_free": True, "pad_to_multiple_of": None,
                                              "lora_B_norm": 3.0}, FEATURES)
    by = {r["field"]: r for r in rows}
    assert set(by) == {"padding_free", "pad_to_multiple_of"}  # per-run evidence is never a difference
    assert by["padding_free"]["features"] == ["padding_free"] and not by["padding_free"]["unexplained"]
    assert by["pad_to_multiple_of"]["unexplained"] and by["pad_to_multiple_of"]["features"] == []
    # a field only an unavailable feature declares is not explained by it
    assert twin_differences({"x": 1}, {"x": 2}, [{"id": "liger", "status": "unavailable", "fields": ["x"]}])[0]["unexplained"]


@pytest.mark.parametrize("delta, verdict", [(0.0, "same quality"), (EVAL_LOSS_TOL * 0.9, "same quality"),
                                            (EVAL_LOSS_TOL * 1.1, "trains worse"), (-EVAL_LOSS_TOL * 1.1, "trains better")])
def test_quality_verdict_against_the_stated_tolerance(delta, verdict):
    q = quality([2.5], [2.5 + delta])
    assert q["verdict"] == verdict and q["tol"] == EVAL_LOSS_TOL and q["delta"] == pytest.approx(delta)


def test_tolerance_grows_with_the_repeats_own_spread():
    assert tolerance([1.0, 1.001], [1.0, 1.001])[0] == EVAL_LOSS_TOL  # 3 sigma sqrt(1) ~ 2e-3 < 5e-3
    noisy_a, noisy_b = [1.00, 1.02, 1.04], [1.00, 1.02, 1.04]
    tol, how = tolerance(noisy_a, noisy_b)
    assert tol == pytest.approx(3 * 0.02 * (2 / 3) ** 0.5) and "pooled sigma" in how


def test_recommended_point_is_audited_in_task_mode_against_twins():
    records = pair("trl", "1.16.0", tps=1000, rec_tps=1500, loss=2.5, rec_loss=2.5005) + \
        pair("llamafactory", "0.9.5", tps=1100, rec_tps=2000, loss=2.5, rec_loss=2.52)
    audits = {a["point_hash"]: a for a in audit_sweep(records)}
    rec, ident = audits["pointrecom"], audits["pointident"]
    assert ident["mode"] == "strict" and "recipe" not in ident
    assert rec["mode"] == "task" and rec["valid"] is True
    entries = {e["label"]: e for e in rec["recipe"]}
    assert entries["trl-1.16.0"]["quality"]["verdict"] == "same quality"
    assert entries["llamafactory-0.9.5"]["quality"]["verdict"] == "trains worse"
    assert {d["field"] for d in entries["trl-1.16.0"]["differences"]} == {"padding_free", "padded_lengths"}
    assert entries["trl-1.16.0"]["unexplained"] == 0 and entries["trl-1.16.0"]["twin_found"]


def test_a_task_field_mismatch_refuses_a_recommended_point_an_implementation_difference_does_not():
    records = pair("trl", "1.16.0", tps=1000, rec_tps=1500, loss=2.5, rec_loss=2.5) + \
        pair("llamafactory", "0.9.5", tps=1100, rec_tps=2000, loss=2.5, rec_loss=2.5,
             rec_audit={"padded_lengths": [1024], "lora_alpha": 16})
    rec = next(a for a in audit_sweep(records) if a["point_hash"] == "pointrecom")
    assert rec["valid"] is False and [m["field"] for m in rec["mismatches"]] == ["lora_alpha"]
    same = pair("trl", "1.16.0", tps=1000, rec_tps=1500, loss=2.5, rec_loss=2.5) + \
        pair("llamafactory", "0.9.5", tps=1100, rec_tps=2000, loss=2.5, rec_loss=2.5, rec_audit={"padded_lengths": [1024]})
    assert next(a for a in audit_sweep(same) if a["point_hash"] == "pointrecom")["valid"] is True


def test_report_shows_both_recipes_side_by_side_with_the_headline(tmp_path):
    from harness.report.render import render_report

    records = pair("trl", "1.16.0", tps=1000, rec_tps=1500, loss=2.5, rec_loss=2.5005, repeats=2) + \
        pair("llamafactory", "0.9.5", tps=1100, rec_tps=3000, loss=2.5, rec_loss=2.53, repeats=2,
             rec_audit={"gradient_checkpointing_use_reentrant": True})
    html = render_report(records, tmp_path, name="recipes").read_text()
    section = html[html.index('<section id="recipes">'):]
    section = section[:section.index("</section>")]
    for label in ("trl-1.16.0", "llamafactory-0.9.5"):
        for mode in ("identical", "recommended"):
            assert f'data-recipe="{label}-{mode}"' in section
    # the fastest same-quality recommended setup is trl's (LLaMA-Factory's trains worse: named in red)
    headline = re.search(r"<div class=\"headline (\w+)\" data-recipe-headline>([^<]*)</div>", section)
    assert headline.group(1) == "unfair"
    text = headline.group(2)
    assert text.startswith("Fastest recommended setup: trl-1.16.0 (padding_free)") and "1.50x faster" in text
    assert "Trains worse than its identical run: llamafactory-0.9.5." in text
    assert re.search(r'class="worse" data-quality="trains worse">\s*\+0\.0300 \(trains worse, tol 0\.005\)', section)
    # time to S*: the twin's supervised tokens over each row's supervised tokens/s
    assert "0.75x its peak memory" in text
    # each framework's audited differences beside the numbers, an unexplained one red
    assert 'data-difference="gradient_checkpointing_use_reentrant"' in section
    assert re.search(r'<tr class="mismatch" data-difference="gradient_checkpointing_use_reentrant">', section)
    assert "unexplained difference" in section and "needs cuda, this run is on cpu" in section
