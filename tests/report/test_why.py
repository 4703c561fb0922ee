"""The "Why they differ" section, and profiled runs kept out of every speed comparison.

Unprofiled records: the committed H200 throughput_7b results (one point, three frameworks). Profiled
records: copies of them turned into profile=memory / profile=time runs (their own job and point hashes,
as harness/job.py gives them) with attributions whose biggest difference is known by construction.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from harness.config.job import job_hash, point_hash
from harness.records import Result
from harness.results.load import load_records, parse_result

REPO_ROOT = Path(__file__).resolve().parents[2]
POINT_DIR = REPO_ROOT / "results" / "h200" / "throughput_7b"
GiB = 2**30
# frozen, trainable, activations, logits+loss, other, fragmentation, non-PyTorch (GiB): LLaMA-Factory's
# peak is the highest, most of the difference logits and loss temporaries
MEMORY = {"trl": (15.2, 0.3, 6.0, 2.0, 0.5, 2.6, 1.2), "llamafactory": (15.2, 0.3, 6.1, 26.0, 0.2, 20.0, 1.2),
          "unsloth": (15.2, 0.3, 4.5, 1.8, 0.4, 1.1, 1.0)}
# data, forward, loss, backward, optimizer, gaps (s per step): unsloth's backward is the shortest
TIME = {"trl": (0.01, 0.30, 0.05, 0.62, 0.03, 0.10), "llamafactory": (0.01, 0.31, 0.08, 0.64, 0.03, 0.06),
        "unsloth": (0.01, 0.20, 0.02, 0.33, 0.03, 0.03)}


def _profiled(record: Result, kind: str) -> Result:
    data = copy.deepcopy(record.to_dict())
    data["job"]["profile"] = {"kind": kind, "steps": 3, "max_entries": 200000, "trace_max_mb": 50.0,
                              "alloc_conf": None}
    data["job_hash"], data["point_hash"] = job_hash(data["job"]), point_hash(data["job"])
    data["run_id"] = f"{data['run_id']}-{kind}"
    name = record.framework.name
    if kind == "memory":
        cats = dict(zip(("frozen_weights", "trainable_state", "activations", "logits_loss", "other", "fragmentation",
                         "non_pytorch"), (int(v * GiB) for v in MEMORY[name])))
        allocated = sum(list(cats.values())[:5])
        data["profile"] = {"kind": "memory", "memory": {
            "status": "ok", "categories": cats, "peak_allocated_bytes": allocated,
            "measured_peak_allocated_bytes": allocated, "coverage": 1.0, "peak_step": 9, "peak_phase": "backward",
            "top_allocations": [{"bytes": 3 * GiB, "part": "logits_loss", "where": "loss_utils.py:30 ForCausalLMLoss"}],
            "notes": []}}
    else:
        parts = dict(zip(("data", "forward", "loss", "backward", "optimizer", "gaps"), (3 * v for v in TIME[name])))
        data["profile"] = {"kind": "time", "time": {
            "status": "ok", "steps": [9, 10, 11], "view": "device", "window_s": sum(parts.values()),
            "parts_s": parts, "step_meter_s": sum(parts.values()), "trace_file": "profile_trace.json.gz",
            "top_kernels": [{"name": "sm90_xmma_gemm_bf16", "count": 900, "total_s": 1.2}], "notes": []}}
    return parse_result(data)


@pytest.fixture(scope="module")
def records() -> list[Result]:
    plain = [r for r in load_records([POINT_DIR]) if r.ok]
    first = {}
    for r in plain:
        first.setdefault(r.framework.name, r)
    assert set(first) == {"trl", "llamafactory", "unsloth"} and len({r.point_hash for r in plain}) == 1
    return plain + [_profiled(r, k) for r in first.values() for k in ("memory", "time")]


def test_a_profiled_job_is_labelled_and_joins_back_to_its_point(records):
    from harness.config.job import unprofiled_point_hash

    plain, profiled = [r for r in records if not r.profiled], [r for r in records if r.profiled]
    assert {r.profiled for r in profiled} == {"memory", "time"}
    assert {unprofiled_point_hash(r.job.to_dict()) for r in profiled} == {plain[0].point_hash}
    assert not {r.point_hash for r in profiled} & {r.point_hash for r in plain}


def test_why_section_names_the_biggest_difference_with_its_evidence(records):
    from harness.report.why import why_sections

    (section,) = why_sections(records).values()
    assert section["memory"]["sentence"] == (
        "llamafactory-0.9.5's NVML peak is 44.7 GiB higher than unsloth-2026.10.9's (69.0 vs 24.3 GiB), "
        "24.2 GiB of it logits and loss temporaries (26.0 vs 1.8 GiB).")
    assert section["time"]["sentence"] == ("llamafactory-0.9.5's profiled step takes 0.51 s longer than "
                                           "unsloth-2026.10.9's (1.13 vs 0.62 s), 0.31 s of it in backward (0.64 vs 0.33 s).")
    assert all(row["adds_up"] for row in section["memory"]["rows"])
    assert section["memory"]["figure"].startswith("data:image/svg+xml;base64,")


def test_report_shows_why_only_with_profiled_runs_and_keeps_them_out_of_the_tables(records, tmp_path):
    from harness.report.render import build_context, render_report

    profiled_ids = {r.run_id for r in records if r.profiled}
    ctx = build_context(records, audits=None, command=None, reference=None, title="t")
    (point,) = ctx["points"]
    assert point["why"] is not None and not ctx["why_only"]
    table_ids = {i for row in point["table"]["rows"] for i in row["run_ids"]} | {r["run_id"] for r in point["runs"]}
    assert table_ids and not table_ids & profiled_ids
    html = render_report(records, tmp_path, name="why").read_text(encoding="utf-8")
    assert html.count('class="why"') == 1 and "Why they differ" in html
    for run_id in profiled_ids:  # listed in the Why section, never as a run of the point's tables
        assert f'data-profiled-run="{run_id}"' in html and f'data-run="{run_id}"' not in html
    plain_only = render_report([r for r in records if not r.profiled], tmp_path, name="plain").read_text()
    assert "Why they differ" not in plain_only


def test_a_controlled_rerun_gets_its_own_row_named_by_its_one_change(records):
    from harness.report.why import why_sections

    lf = next(r for r in records if r.profiled == "memory" and r.framework.name == "llamafactory")
    data = copy.deepcopy(lf.to_dict())
    data["job"]["profile"]["alloc_conf"] = "expandable_segments:True"
    data["job_hash"], data["run_id"] = job_hash(data["job"]), data["run_id"] + "-x"
    data["profile"]["memory"]["categories"]["fragmentation"] = int(0.5 * GiB)
    (section,) = why_sections(records + [parse_result(data)]).values()
    labels = [row["label"] for row in section["memory"]["rows"]]
    assert "llamafactory-0.9.5 (expandable_segments:True)" in labels and "llamafactory-0.9.5" in labels


def test_a_report_of_profiled_runs_alone_has_only_its_why_section(records, tmp_path):
    from harness.report.render import build_context

    ctx = build_context([r for r in records if r.profiled], audits=[], command=None, reference=None, title="t")
    assert not ctx["points"] and len(ctx["why_only"]) == 1


def test_compare_and_history_trends_leave_profiled_runs_out(records):
    from harness.regression.grouping import ok_records
    from harness.results.history import history_entry

    assert ok_records(records) == [r for r in records if not r.profiled]
    profiled = next(r for r in records if r.profiled)
    assert history_entry(profiled)["profile"] == profiled.profiled
    assert "profile" not in history_entry(next(r for r in records if not r.profiled))


def test_an_unprofiled_result_round_trips_without_a_profile_key(records):
    raw = next(r for r in records if not r.profiled).to_dict()
    assert "profile" not in raw and "profile" not in raw["job"]
    profiled = next(r for r in records if r.profiled)
    assert re.fullmatch(r"[0-9a-f]{12}", profiled.point_hash)
    # a profiled result round-trips exactly through the typed records (profile sections are typed fields)
    assert parse_result(profiled.to_dict()).to_dict() == profiled.to_dict()
    assert profiled.profile.memory is not None or profiled.profile.time is not None


def _loss_path(**kw) -> dict:
    base = {"requested": "native", "micro_steps": 48, "head_calls": 0, "common_loss_calls": 0,
            "model_loss_function": "transformers.loss.loss_utils.ForCausalLMLoss",
            "trainer_compute_loss": "trl.trainer.sft_trainer.SFTTrainer.compute_loss", "notes": []}
    return {**base, **kw}


def test_the_same_loss_rerun_is_named_and_said_what_its_one_change_did(records, tmp_path):
    from harness.report.render import render_report
    from harness.report.why import why_sections

    trl = next(r for r in records if r.profiled == "memory" and r.framework.name == "trl")
    native = copy.deepcopy(trl.to_dict())
    native["profile"]["loss_path"] = _loss_path(path="no full logits")
    data = copy.deepcopy(trl.to_dict())
    data["job"]["profile"]["loss"] = "transformers"
    data["job_hash"], data["run_id"] = job_hash(data["job"]), data["run_id"] + "-same-loss"
    data["profile"]["memory"]["categories"]["logits_loss"] = int(26.0 * GiB)  # LLaMA-Factory's, by construction
    data["profile"]["loss_path"] = _loss_path(
        requested="transformers", head_calls=48, common_loss_calls=48, logits_shape=[16, 1024, 152064],
        logits_dtype="bfloat16", loss_dtype="float32", loss_function="transformers.loss.loss_utils.ForCausalLMLoss",
        path="full logits (bfloat16 [16, 1024, 152064]) -> ForCausalLMLoss in float32")
    others = [r for r in records if r.run_id != trl.run_id]
    (section,) = why_sections(others + [parse_result(native), parse_result(data)]).values()
    rows = {row["label"]: row for row in section["memory"]["rows"]}
    assert rows["trl-1.16.0 (loss=transformers)"]["loss"] == "full bfloat16 logits -> ForCausalLMLoss (float32), the harness's"
    assert rows["trl-1.16.0"]["loss"] == "fused: no full logits"
    assert rows["llamafactory-0.9.5"]["loss"] == "not read back"  # a result from before the read-back
    # the biggest difference between the frameworks is still among their own runs; the rerun has its own sentence
    assert section["memory"]["sentence"].startswith("llamafactory-0.9.5's NVML peak is 44.7 GiB higher than unsloth")
    assert section["memory"]["controls"] == [
        "trl-1.16.0 (loss=transformers): the one change moves trl-1.16.0's NVML peak from 27.8 to 51.8 GiB (+24.0), "
        "+24.0 GiB of it logits and loss temporaries (2.0 to 26.0 GiB); loss path fused: no full logits -> "
        "full bfloat16 logits -> ForCausalLMLoss (float32), the harness's."]
    html = render_report(others + [parse_result(native), parse_result(data)], tmp_path, name="same-loss").read_text()
    assert html.count('data-why-control="memory"') == 1 and "loss=transformers" in html
    assert "loss path: full logits (bfloat16 [16, 1024, 152064])" in html


def test_the_sdpa_rerun_joins_its_point_is_named_and_shows_the_attention_ops(records, tmp_path):
    from harness.report.render import render_report
    from harness.report.why import why_sections

    trl = next(r for r in records if r.profiled == "time" and r.framework.name == "trl")
    native = copy.deepcopy(trl.to_dict())
    native["profile"]["time"]["sdpa_ops"] = [
        {"name": "aten::_scaled_dot_product_cudnn_attention", "count": 168, "total_s": 0.263, "median_s": 0.00019,
         "max_s": 0.0711, "slow_calls": 4, "slow_s": 0.229}]
    data = copy.deepcopy(native)
    data["job"]["train"]["sdpa_backend"] = "efficient"
    data["job_hash"], data["point_hash"] = job_hash(data["job"]), point_hash(data["job"])
    data["run_id"] += "-sdpa"
    data["profile"]["time"]["parts_s"]["gaps"] -= 0.3  # 0.1 s a step less idle GPU, by construction
    data["profile"]["time"]["sdpa_ops"] = [
        {"name": "aten::_scaled_dot_product_efficient_attention", "count": 168, "total_s": 0.05, "median_s": 0.0003,
         "max_s": 0.0009, "slow_calls": 0, "slow_s": 0.0}]
    others = [r for r in records if r.run_id != trl.run_id]
    # its own point (train.sdpa_backend is part of the job), yet it explains the point of PyTorch's own choice
    assert data["point_hash"] != native["point_hash"]
    (section,) = why_sections(others + [parse_result(native), parse_result(data)]).values()
    rows = {row["label"]: row for row in section["time"]["rows"]}
    assert rows["trl-1.16.0 (sdpa=efficient)"]["control"] and not rows["trl-1.16.0"]["control"]
    assert rows["trl-1.16.0"]["sdpa"].startswith("_scaled_dot_product_cudnn_attention x168 (0.263 s, median 0.19 ms, "
                                                 "4 over 10x it: 0.229 s)")
    (control,) = section["time"]["controls"]
    assert control.startswith("trl-1.16.0 (sdpa=efficient): the one change moves trl-1.16.0's profiled step from")
    assert "-0.1 s of it in idle / launch gaps" in control
    html = render_report(others + [parse_result(native), parse_result(data)], tmp_path, name="sdpa").read_text()
    assert html.count('data-why-control="time"') == 1 and html.count("data-why-sdpa") == 2
    assert "_scaled_dot_product_efficient_attention x168" in html


def _with_sdpa(r: Result, backend: str, suffix: str) -> Result:
    data = copy.deepcopy(r.to_dict())
    data["job"]["train"]["sdpa_backend"] = backend
    data["job_hash"], data["point_hash"] = job_hash(data["job"]), point_hash(data["job"])
    data["run_id"] += suffix
    return parse_result(data)


def test_in_a_suite_that_pins_a_kernel_its_profile_is_native_and_the_framework_own_choice_the_control(records):
    """throughput_7b pinning train.sdpa_backend=efficient (issue 13): a profiled efficient run is that point's own
    profile, and a profiled run at PyTorch's own choice the controlled rerun, named sdpa=auto."""
    from harness.report.why import why_sections

    pinned = [_with_sdpa(r, "efficient", "-pinned") for r in records]  # every run, plain and profiled
    trl = next(r for r in records if r.profiled == "time" and r.framework.name == "trl")
    auto = parse_result({**copy.deepcopy(trl.to_dict()), "run_id": f"{trl.run_id}-auto"})
    (point,) = {r.point_hash for r in pinned if not r.profiled}
    sections = why_sections(pinned + [auto])
    assert set(sections) == {point}  # the auto run joins the pinned point, not a point of its own
    rows = {row["label"]: row for row in sections[point]["time"]["rows"]}
    assert not rows["trl-1.16.0"]["control"] and rows["trl-1.16.0 (sdpa=auto)"]["control"]
    assert "sdpa=efficient" not in " ".join(rows)
    (control,) = sections[point]["time"]["controls"]
    assert control.startswith("trl-1.16.0 (sdpa=auto): the one change moves trl-1.16.0's profiled step from")


def test_profiled_runs_alone_explain_the_point_of_the_fields_defaults(records):
    from harness.report.why import why_sections

    profiled = [r for r in records if r.profiled]
    trl = next(r for r in profiled if r.profiled == "time" and r.framework.name == "trl")
    sections = why_sections(profiled + [_with_sdpa(trl, "efficient", "-sdpa")])
    (section,) = sections.values()
    assert {row["label"] for row in section["time"]["rows"]} >= {"trl-1.16.0", "trl-1.16.0 (sdpa=efficient)"}


SESSION7 = REPO_ROOT / "results" / "h200" / "session7" / "throughput_7b"


def test_a_part_no_head_mark_could_separate_is_shown_not_separable_and_compared_on_the_coarser_split(records):
    """unsloth's fused loss calls no module the head mark can hook (harness/worker/model_marks.py): its logits
    and loss are in activations, its loss time in forward, recorded as None in ``not_separated``. The cells
    say so, never 0, and the sentences compare every row on the split each can give."""
    from harness.report.why import why_sections

    changed = []
    for r in records:
        data = copy.deepcopy(r.to_dict())
        if r.profiled == "memory" and r.framework.name == "unsloth":
            cats = data["profile"]["memory"]["categories"]
            cats["activations"], cats["logits_loss"] = cats["activations"] + cats["logits_loss"], None
            data["profile"]["memory"]["not_separated"] = {"logits_loss": "activations"}
        elif r.profiled == "time" and r.framework.name == "unsloth":
            parts = data["profile"]["time"]["parts_s"]
            parts["forward"], parts["loss"] = parts["forward"] + parts["loss"], None
            data["profile"]["time"]["not_separated"] = {"loss": "forward"}
        changed.append(parse_result(data))
    (section,) = why_sections(changed).values()
    memory = {row["framework"]: row for row in section["memory"]["rows"]}
    column = section["memory"]["columns"].index("logits + loss")
    assert memory["unsloth-2026.10.9"]["cells"][column] == "not separable (in activations)"
    assert memory["trl-1.16.0"]["cells"][column] == "2.00 GiB"
    # LLaMA-Factory's 6.1 + 26.0 GiB against unsloth's 4.5 + 1.8 GiB, one category in both
    assert section["memory"]["sentence"] == (
        "llamafactory-0.9.5's NVML peak is 44.7 GiB higher than unsloth-2026.10.9's (69.0 vs 24.3 GiB), 25.8 GiB "
        "of it activations (kept for backward, recomputed, their grads) with logits and loss temporaries (not "
        "separable in every run) (32.1 vs 6.3 GiB).")
    time = {row["framework"]: row for row in section["time"]["rows"]}
    assert time["unsloth-2026.10.9"]["cells"][section["time"]["columns"].index("head + loss")] == \
        "not separable (in forward)"
    assert section["time"]["sentence"].endswith("0.31 s of it in backward (0.64 vs 0.33 s).")


def test_session_7_unsloth_profiles_recorded_before_the_field_read_not_separable():
    """The committed session-7 results (results/h200/session7/throughput_7b) were written before
    ``not_separated``: unsloth's memory profiles carry the attribution's note, its time profiles a loss of
    exactly 0 s. Neither is shown as a measured 0; trl's and LLaMA-Factory's, marked, are shown as measured."""
    from harness.report.why import why_sections

    (section,) = why_sections(load_records([SESSION7])).values()
    for kind, column in (("memory", "logits + loss"), ("time", "head + loss")):
        block = section[kind]
        index = block["columns"].index(column)
        cells = {row["label"]: row["cells"][index] for row in block["rows"]}
        unsloth = {label: cell for label, cell in cells.items() if label.startswith("unsloth")}
        assert len(unsloth) == 2 and all(cell.startswith("not separable") for cell in unsloth.values()), cells
        assert not any(cell.startswith("not separable") for label, cell in cells.items() if label not in unsloth)
    assert "with logits and loss temporaries (not separable in every run)" in section["memory"]["sentence"]


def _with_gpu(record: Result, classes: dict[str, float], idle: dict) -> Result:
    data = copy.deepcopy(record.to_dict())
    data["profile"]["time"]["kernel_classes_s"] = classes
    data["profile"]["time"]["idle"] = idle
    return parse_result(data)


def test_kernel_classes_and_the_gpu_idle_causes_are_shown_and_named(records, tmp_path):
    """trl's step: 0.6 s more copies and casts than unsloth's (3 steps), equal GEMM; its idle line counts gaps over
    the profiled steps and gives seconds per step."""
    from harness.report.render import render_report
    from harness.report.why import why_sections

    def idle(total, long_ops):
        return {"total_s": total, "short_gaps_s": 0.03, "short_gaps": 31_000, "long_gaps_s": total - 0.03,
                "long_gaps": sum(o["count"] for o in long_ops), "long_gap_ops": long_ops}
    gpu = {"trl": ({"GEMM": 1.14, "copies and casts": 0.60, "elementwise": 0.38},
                   idle(0.65, [{"op": "aten::_cudnn_attention_forward", "count": 8, "idle_s": 0.228, "after_sync": 0},
                               {"op": "no op recorded", "count": 23, "idle_s": 0.124, "after_sync": 9}])),
           "unsloth": ({"GEMM": 1.20, "copies and casts": 0.003, "fused (Triton)": 0.09},
                       idle(0.30, [{"op": "aten::_cudnn_attention_forward", "count": 4, "idle_s": 0.09, "after_sync": 0}]))}
    timed = [_with_gpu(r, *gpu[r.framework.name]) if r.profiled == "time" and r.framework.name in gpu else r
             for r in records]
    (section,) = why_sections(timed).values()
    assert section["time"]["kernel_sentence"] == (
        "On the GPU, trl-1.16.0's step spends 0.199 s more than unsloth-2026.10.9's in copies and casts (0.200 vs "
        "0.001 s) and 0.127 s more in elementwise (0.127 vs 0.000 s); their GEMM time is within 10% (0.380 vs 0.400 s).")
    row = next(r for r in section["time"]["rows"] if r["framework"].startswith("trl"))
    assert row["idle"].startswith("GPU idle 0.217 s a step, over 3 profiled step(s): 0.010 s in 31,000 launch gaps")
    assert "aten::_cudnn_attention_forward 0.076 s (8); no op recorded 0.041 s (23, 9 right after a sync)" in row["idle"]
    llamafactory = next(r for r in section["time"]["rows"] if r["framework"].startswith("llamafactory"))
    assert llamafactory["gpu"] is None and llamafactory["idle"] is None  # an older result: no classes recorded
    html = render_report(timed, tmp_path, name="why-gpu").read_text(encoding="utf-8")
    assert html.count("data-why-idle") == 2 and "data-why-kernels" in html


def test_the_kernel_sentence_names_a_runner_up_only_where_the_slower_step_spends_more(records):
    """trl's step spends more than unsloth's only in GPU idle: no second class is named, never '0.000 s more'."""
    from harness.report.why import why_sections

    def idle(total):
        return {"total_s": total, "short_gaps_s": 0.03, "short_gaps": 100, "long_gaps_s": total - 0.03, "long_gaps": 1,
                "long_gap_ops": []}
    gpu = {"trl": ({"GEMM": 1.14}, idle(0.65)), "unsloth": ({"GEMM": 1.20, "fused (Triton)": 0.09}, idle(0.30))}
    timed = [_with_gpu(r, *gpu[r.framework.name]) if r.profiled == "time" and r.framework.name in gpu else r
             for r in records]
    (section,) = why_sections(timed).values()
    assert section["time"]["kernel_sentence"] == (
        "On the GPU, trl-1.16.0's step spends 0.117 s more than unsloth-2026.10.9's in GPU idle (0.217 vs 0.100 s); "
        "their GEMM time is within 10% (0.380 vs 0.400 s).")


def _lora_cast(**kw) -> dict:
    base = {"requested": "native", "layers": 196, "switched": 0, "watched": True, "micro_steps": 48, "calls": 18816,
            "casts": 18816, "skipped": 0, "cast_from": "bfloat16", "cast_to": "float32", "autocast": "bfloat16",
            "summary": "18,816 casts bfloat16 -> float32, under bfloat16 autocast", "notes": []}
    return {**base, **kw}


def test_the_lora_input_cast_rerun_is_named_and_said_what_its_one_change_did(records, tmp_path):
    """trl under profile.lora_input_cast=off: its own row, and a sentence with the casts read back (18,816 -> 0) and
    the kernel class the change moved most (copies and casts), by construction; unsloth's control switched nothing."""
    from harness.report.render import render_report
    from harness.report.why import why_sections

    def timed(r: Result, casts: dict, classes: dict, off: bool, backward: float | None = None) -> Result:
        data = copy.deepcopy(r.to_dict())
        if off:
            data["job"]["profile"]["lora_input_cast"] = "off"
            data["job_hash"], data["run_id"] = job_hash(data["job"]), data["run_id"] + "-cast-off"
        data["profile"]["lora_cast"] = casts
        data["profile"]["time"]["kernel_classes_s"] = classes
        data["profile"]["time"]["idle"] = {"total_s": 0.3, "short_gaps_s": 0.03, "short_gaps": 100, "long_gaps_s": 0.27,
                                           "long_gaps": 1, "long_gap_ops": []}
        if backward is not None:
            data["profile"]["time"]["parts_s"]["backward"] = backward
        return parse_result(data)

    trl = next(r for r in records if r.profiled == "time" and r.framework.name == "trl")
    unsloth = next(r for r in records if r.profiled == "time" and r.framework.name == "unsloth")
    own = _lora_cast(watched=False, calls=0, casts=0, cast_from=None, cast_to=None, autocast=None,
                     summary="196 peft LoRA layers, not watched (the framework's own LoRA path)")
    runs = [timed(trl, _lora_cast(), {"GEMM": 1.14, "copies and casts": 0.60, "elementwise": 0.38}, False),
            timed(trl, _lora_cast(requested="off", switched=196, casts=0, skipped=18816,
                                  summary="0 casts, 18,816 skipped (bfloat16 -> float32, under bfloat16 autocast)"),
                  {"GEMM": 1.14, "copies and casts": 0.06, "elementwise": 0.38}, True, backward=3 * 0.50),
            timed(unsloth, own, {"GEMM": 1.20, "copies and casts": 0.003}, False),
            timed(unsloth, {**own, "requested": "off", "notes": ["nothing switched, not watched"]},
                  {"GEMM": 1.20, "copies and casts": 0.003}, True)]
    others = [r for r in records if r.run_id not in (trl.run_id, unsloth.run_id)]
    (section,) = why_sections(others + runs).values()
    rows = {row["label"]: row for row in section["time"]["rows"]}
    assert rows["trl-1.16.0 (lora_input_cast=off)"]["casts"] == "0 casts, 18,816 skipped (bfloat16 -> float32)"
    assert rows["trl-1.16.0"]["casts"] == "18,816 casts (bfloat16 -> float32)"
    assert rows["unsloth-2026.10.9 (lora_input_cast=off)"]["casts"] == "not watched (own LoRA path)"
    assert rows["llamafactory-0.9.5"]["casts"] == "not read back"  # a result from before the read-back
    # the frameworks' own sentence is still among their own runs
    assert section["time"]["sentence"].startswith("llamafactory-0.9.5's profiled step takes 0.51 s longer than unsloth")
    trl_ctl, unsloth_ctl = section["time"]["controls"]
    assert trl_ctl == (
        "trl-1.16.0 (lora_input_cast=off): the one change moves trl-1.16.0's profiled step from 1.11 to 0.99 s (-0.12 s), "
        "-0.12 s of it in backward (0.62 to 0.5 s); on the GPU, copies and casts 0.200 to 0.020 s a step (-0.180); "
        "same loss path (not read back); LoRA input casts 18,816 -> 0 (0 casts, 18,816 skipped (bfloat16 -> float32)).")
    assert unsloth_ctl.endswith("LoRA input casts: nothing switched (not watched (own LoRA path)).")
    # beside a run of its framework from before the read-back (session 7's), the control's own count still says it
    before = runs[1:] + [timed(trl, None, {"GEMM": 1.14, "copies and casts": 0.60}, False)]
    (section,) = why_sections(others + before).values()
    assert section["time"]["controls"][0].endswith(
        "LoRA input casts: 0 casts, 18,816 skipped (bfloat16 -> float32) (the run without the change has no read-back).")
    html = render_report(others + runs, tmp_path, name="cast-off").read_text(encoding="utf-8")
    assert html.count('data-why-control="time"') == 2 and "lora_input_cast=off" in html
    assert "LoRA input casts: 0 casts, 18,816 skipped" in html


def test_a_point_whose_recorded_hash_drifted_is_still_joined_by_its_job(records):
    """Older results can carry a point hash today's hashing no longer gives (fields added since): the profiled runs
    join the point by its job, under the hash it recorded."""
    from harness.report.why import why_sections

    drifted = []
    for r in records:
        data = copy.deepcopy(r.to_dict())
        if not r.profiled:
            data["point_hash"] = "drifted00000"
        drifted.append(parse_result(data))
    assert set(why_sections(drifted)) == {"drifted00000"}
