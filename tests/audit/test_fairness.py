"""The cross-framework diff: identical audits pass, a strict difference refuses the point, native lists it."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from harness.records import Result
from harness.audit.fairness import (INFORMATIONAL_FIELDS, STRICT_FIELDS, audit_point, audit_sweep, diff_point,
                                    values_equal, write_audit)

AUDIT = {
    "trainable_params": 8798208, "total_params": 502830976, "lora_modules": ["q_proj", "k_proj", "v_proj"],
    "lora_module_count": 72, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "lora_scaling": 2.0,
    "use_rslora": False, "use_dora": False, "lora_bias": "none", "quantization": "none", "base_dtype": "bfloat16",
    "mixed_precision": "bf16", "attn_implementation": "sdpa", "optimizer": "AdamW", "lr": 2e-4,
    "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "max_grad_norm": 1.0, "lr_scheduler": "linear",
    "warmup_steps": 0, "total_steps": 60, "per_device_batch": 8, "grad_accum": 1, "world_size": 1,
    "effective_batch": 8, "max_length": 1024, "packing": False, "padding_free": False,
    "loss_mask_share": 0.4123456789, "first_batch_hash": "ab" * 32, "eval_set_hash": "cd" * 32,
    "train_set_hash": "ef" * 32, "gradient_checkpointing": True, "gradient_checkpointing_use_reentrant": False,
    "seed": 42, "trainable_dtype": "float32", "gradient_checkpointing_kind": "hf", "records_truncated": 3,
    "lora_B_norm": 1.5, "notes": [],
}


def record(name: str, audit: dict | None, *, status: str = "ok", point: str = "p1", repeat: int = 0) -> Result:
    version = {"trl": "1.16.0", "llamafactory": "0.9.5", "unsloth": "2026.10.9"}[name]
    return Result.from_dict({"framework": {"name": name, "version": version}, "status": status, "point_hash": point,
                             "repeat": repeat, "audit": copy.deepcopy(audit)})


def test_identical_audits_are_valid():
    out = diff_point({"trl-1.16.0": AUDIT, "llamafactory-0.9.5": copy.deepcopy(AUDIT)})
    assert out["valid"] is True and out["mismatches"] == []
    assert all(row["match"] for row in out["fields"])
    json.dumps(out)


def test_changed_lora_alpha_is_invalid_and_named_with_both_values():
    other = dict(AUDIT, lora_alpha=64, lora_scaling=4.0)
    out = diff_point({"trl-1.16.0": AUDIT, "llamafactory-0.9.5": other})
    assert out["valid"] is False
    by_field = {m["field"]: m for m in out["mismatches"]}
    assert set(by_field) == {"lora_alpha", "lora_scaling"}
    assert by_field["lora_alpha"]["values"] == {"trl-1.16.0": 32, "llamafactory-0.9.5": 64}
    assert by_field["lora_alpha"]["strict"] is True


def test_native_mode_lists_every_difference_but_stays_valid():
    other = dict(AUDIT, lora_alpha=64, gradient_checkpointing_kind="unsloth")
    out = audit_point([record("trl", AUDIT), record("llamafactory", other)], "native")
    assert out["valid"] is True and out["mode"] == "native"
    assert {d["field"] for d in out["differences"]} == {"lora_alpha", "gradient_checkpointing_kind"}
    strict = audit_point([record("trl", AUDIT), record("llamafactory", other)], "strict")
    assert strict["valid"] is False and [m["field"] for m in strict["mismatches"]] == ["lora_alpha"]


def test_informational_difference_does_not_invalidate():
    other = dict(AUDIT, gradient_checkpointing_kind="unsloth", records_truncated=5)
    out = diff_point({"a": AUDIT, "b": other})
    assert out["valid"] is True
    assert {r["field"] for r in out["fields"] if not r["match"]} == {
        "gradient_checkpointing_kind", "records_truncated"}


def test_float_tolerance_is_relative_1e6():
    near = dict(AUDIT, loss_mask_share=AUDIT["loss_mask_share"] * (1 + 1e-8), lr=2e-4 * (1 + 5e-7))
    assert diff_point({"a": AUDIT, "b": near})["valid"] is True
    far = dict(AUDIT, loss_mask_share=AUDIT["loss_mask_share"] * (1 + 1e-4))
    out = diff_point({"a": AUDIT, "b": far})
    assert [m["field"] for m in out["mismatches"]] == ["loss_mask_share"]
    assert values_equal(1e-8, 1.0000001e-8) and not values_equal(1e-8, 1.1e-8)
    assert not values_equal(True, 1) and not values_equal(0, False)


def test_lora_modules_order_insensitive_but_content_sensitive():
    shuffled = dict(AUDIT, lora_modules=["v_proj", "q_proj", "k_proj"])
    assert diff_point({"a": AUDIT, "b": shuffled})["valid"] is True
    fewer = dict(AUDIT, lora_modules=["q_proj", "v_proj"])
    assert diff_point({"a": AUDIT, "b": fewer})["mismatches"][0]["field"] == "lora_modules"


def test_betas_list_and_tuple_compare_equal():
    assert diff_point({"a": AUDIT, "b": dict(AUDIT, betas=(0.9, 0.999))})["valid"] is True


def test_missing_strict_field_is_a_mismatch():
    other = {k: v for k, v in AUDIT.items() if k != "first_batch_hash"}
    out = diff_point({"a": AUDIT, "b": other})
    assert out["valid"] is False and out["mismatches"][0]["values"]["b"] is None


def test_audit_point_ignores_failed_runs_and_folds_repeats():
    records = [record("trl", AUDIT), record("trl", AUDIT, repeat=1),
               record("llamafactory", AUDIT), record("unsloth", None, status="unavailable")]
    out = audit_point(records, "strict")
    assert out["valid"] is True
    assert out["labels"] == ["llamafactory-0.9.5", "trl-1.16.0"]
    assert out["skipped"] == ["unsloth-2026.10.9"]
    assert out["point_hash"] == "p1" and out["repeat_mismatches"] == []


def test_repeat_mismatch_reported():
    records = [record("trl", AUDIT), record("trl", dict(AUDIT, first_batch_hash="00" * 32), repeat=1)]
    out = audit_point(records, "strict")
    assert [m["field"] for m in out["repeat_mismatches"]] == ["first_batch_hash"]


def test_ok_run_without_audit_invalidates_strict():
    out = audit_point([record("trl", AUDIT), record("llamafactory", None)], "strict")
    assert out["valid"] is False and out["missing_audit"] == ["llamafactory-0.9.5"]


def test_bad_mode_refused():
    with pytest.raises(ValueError):
        audit_point([], "loose")


def test_audit_sweep_groups_by_point(tmp_path):
    records = [record("trl", AUDIT, point="p1"), record("llamafactory", dict(AUDIT, seed=1), point="p1"),
               record("trl", AUDIT, point="p2"), record("llamafactory", AUDIT, point="p2")]
    points = audit_sweep(records, "strict")
    assert [(p["point_hash"], p["valid"]) for p in points] == [("p1", False), ("p2", True)]
    path = write_audit(tmp_path / "audit.json", points)
    assert json.loads(path.read_text())[0]["mismatches"][0]["field"] == "seed"


def test_field_lists_disjoint_and_cover_design():
    assert not set(STRICT_FIELDS) & set(INFORMATIONAL_FIELDS)
    assert len(set(STRICT_FIELDS)) == len(STRICT_FIELDS)
    for must in ("lora_alpha", "trainable_params", "optimizer", "effective_batch", "gradient_checkpointing",
                 "packing", "padding_free", "first_batch_hash", "eval_set_hash", "attn_implementation", "seed"):
        assert must in STRICT_FIELDS


def test_the_audit_command_says_nothing_was_compared_for_a_point_of_one_framework(capsys):
    from harness.cli.audit import main

    repo = Path(__file__).resolve().parents[2] / "results" / "h200" / "session6"
    assert main([str(repo / "trl_spread" / "pinned" / "throughput_7b")]) == 0  # three trl repeats, nobody else
    assert "(trl-1.16.0): nothing compared (one framework)" in capsys.readouterr().out
    assert main([str(repo / "throughput_7b")]) == 0
    assert "unsloth-2026.10.9): fair in strict mode" in capsys.readouterr().out
