"""Cross-checks: the eval-loss agreement rebuilds each framework's own averaging from our per-record losses."""
from __future__ import annotations

import pytest

from harness.results.cross_checks import ddp_step_mean, eval_agreement, eval_tolerance
from harness.records.training import Eval


def agree(evaluation: dict, **kwargs) -> dict:
    """The check of an eval section as result.json stores it, as result.json stores the verdict."""
    return eval_agreement(Eval.from_dict(evaluation), **kwargs).to_dict()



# [summed cross-entropy, supervised tokens] of four records: per-record means 2, 1, 4, 3.
RECORDS = [[20.0, 10], [5.0, 5], [8.0, 2], [30.0, 10]]


def test_ddp_step_mean_is_the_token_weighted_mean_of_each_step_of_world_size_records():
    # 2 ranks: step 0 = records 0,1 -> 25/15; step 1 = records 2,3 -> 38/12.
    assert ddp_step_mean(RECORDS, 2) == pytest.approx((25 / 15 + 38 / 12) / 2)
    assert ddp_step_mean(RECORDS, 1) == pytest.approx((2 + 1 + 4 + 3) / 4)


def test_single_process_compares_with_the_mean_over_records():
    evaluation = {"record_mean_loss": 2.5, "record_losses": RECORDS, "framework_loss": 2.5004, "tokens": 27,
                  "logits_dtype": "bfloat16"}
    check = agree(evaluation)
    assert check["passed"] is True and "mean over records" in check["detail"]
    assert agree(dict(evaluation, framework_loss=2.52))["passed"] is False


def test_under_ddp_either_averaging_matches_and_the_detail_names_which():
    ddp = (25 / 15 + 38 / 12) / 2
    evaluation = {"record_mean_loss": 2.5, "record_losses": RECORDS, "framework_loss": ddp + 1e-4, "tokens": 27,
                  "logits_dtype": "bfloat16"}
    check = agree(evaluation, world_size=2)
    assert check["passed"] is True and "2 ranks" in check["detail"]
    assert agree(evaluation, world_size=1)["passed"] is False  # one process: only the record mean
    assert agree(dict(evaluation, framework_loss=2.5), world_size=2)["passed"] is True  # trl's way
    assert agree(dict(evaluation, framework_loss=3.0), world_size=2)["passed"] is False


def test_no_framework_loss_does_not_apply():
    assert agree({"record_mean_loss": 2.5, "framework_loss": None})["passed"] is None


def test_tolerance_follows_the_compute_dtype_and_the_logits_scale():
    # u * rms(logits), u = 2^-8 for bf16; fp32 down to the floor; results without rms keep their old 1e-3.
    assert eval_tolerance("bfloat16", logits_rms=1.2) == pytest.approx(2 ** -8 * 1.2)
    assert eval_tolerance("float32", logits_rms=1.2) == 1e-5
    assert eval_tolerance(None, 1.2) == eval_tolerance("bfloat16", 1.2)  # unknown dtype: the loosest
    assert eval_tolerance("bfloat16", None) == 1e-3


def _tiny(seed: int):
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from tests.measure.test_evaluator import HUB, TINY

    tok = AutoTokenizer.from_pretrained(str(TINY if (TINY / "tokenizer_config.json").exists() else HUB))
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return Qwen2ForCausalLM(cfg).float().eval(), tok


def _trainer_style_eval_loss(model, tok, records, pad_to: int) -> float:
    """What HF's Trainer reports at eval batch 1: each record padded like the collator, the model's own loss
    (labels -> ForCausalLMLoss), averaged over records."""
    import torch

    from harness.data.tokenize import tokenize_record

    losses = []
    for r in records:
        it = tokenize_record(tok, r, 64)
        n = len(it["input_ids"])
        width = -(-n // pad_to) * pad_to
        ids = torch.full((1, width), tok.pad_token_id)
        labels = torch.full((1, width), -100)
        mask = torch.zeros((1, width), dtype=torch.long)
        ids[0, :n], labels[0, :n], mask[0, :n] = torch.tensor(it["input_ids"]), torch.tensor(it["labels"]), 1
        with torch.no_grad():
            losses.append(float(model(input_ids=ids, attention_mask=mask, labels=labels).loss))
    return sum(losses) / len(losses)


def test_honest_evaluation_passes_and_another_models_loss_fails():
    from harness.worker.evaluator import evaluate_loss
    from tests.measure.test_evaluator import RECORDS as RECS

    model, tok = _tiny(0)
    other, _ = _tiny(1)
    ours = evaluate_loss(model, tok, RECS, max_length=64, batch_size=1, pad_to_multiple_of=8)
    assert ours["logits_dtype"] == "float32" and ours["logits_rms"] > 0 and ours["batch_size"] == 1
    honest = agree(dict(ours, framework_loss=_trainer_style_eval_loss(model, tok, RECS, 8)), compute_dtype="float32")
    assert honest["passed"] is True, honest["detail"]
    assert "same batch shapes" in honest["detail"]
    mismatch = agree(dict(ours, framework_loss=_trainer_style_eval_loss(other, tok, RECS, 8)), compute_dtype="float32")
    assert mismatch["passed"] is False, mismatch["detail"]
    # Even judged as bf16 (the loosest tolerance), another model's losses are far outside it.
    assert agree(dict(ours, framework_loss=_trainer_style_eval_loss(other, tok, RECS, 8)),
                          compute_dtype="bfloat16")["passed"] is False


def test_the_h200_unsloth_difference_passes_and_older_shape_mismatches_are_explained():
    # Measured on the H200 (results/h200/throughput_7b, session 3): unsloth's fused eval loss against ours at
    # the same shapes, 3.25e-4 apart over 4,295 tokens of a bf16 model with logits rms 1.20: an honest run.
    same_shapes = {"record_mean_loss": 9.560798, "framework_loss": 9.561123, "tokens": 4295, "logits_rms": 1.2017,
                   "batch_size": 1}
    assert agree(same_shapes, compute_dtype="bfloat16")["passed"] is True
    # A token more per record (LLaMA-Factory's whitespace finding of session 2) moves the mean by ~1e-2: caught.
    assert agree(dict(same_shapes, framework_loss=9.560798 + 1.2e-2), compute_dtype="bfloat16")["passed"] is False
    # Session 2 (no rms recorded, our batches of 16 against the Trainer's batches of 1): judged by its 1e-3 and
    # the failure explained by the shapes.
    older = {"record_mean_loss": 11.00451, "framework_loss": 11.00451 + 3.2e-3, "tokens": 4301, "batch_size": None}
    check = agree(older, compute_dtype="bfloat16")
    assert check["passed"] is False and "differ in shape" in check["detail"] and "batched records differently" in check["explanation"]


def test_timing_settled_judges_the_fixed_window_and_keeps_old_results_verdicts():
    from harness.results.cross_checks import timing_settled
    from harness.records.training import Warmup

    def judged(**warmup):
        return timing_settled(Warmup.from_dict(warmup))

    assert timing_settled(None).passed is None
    assert judged(settle_factor=None).passed is None
    ok = judged(settle_factor=1.5, timing_starts_after_step=8, unsettled_timed_steps=[], settled=True)
    assert ok.passed is True and "after step 8" in ok.detail
    bad = judged(settle_factor=1.5, timing_starts_after_step=8, unsettled_timed_steps=[11, 14], settled=False)
    assert bad.passed is False and "[11, 14]" in bad.detail and "measure_warmup_steps" in bad.detail
    # session 3's records: the window had been moved past every slow step of the first half
    old = judged(settle_factor=1.5, timing_starts_after_step=22, extended_by=14, slow_steps=[22])
    assert old.passed is True and "before the window was fixed" in old.detail


def test_a_compilation_in_a_timed_step_fails_and_one_in_the_warm_up_is_counted():
    from harness.records.training import Train
    from harness.results.cross_checks import no_compile_in_timed_steps

    def judged(compiles):
        log = [{"step": n + 1, "compiles": c, "compile_s": None if c is None else 0.4 * c} for n, c in enumerate(compiles)]
        return no_compile_in_timed_steps(Train.from_dict({"warmup_steps": 2, "log": log}))

    warm = judged([3, 1, 0, 0])
    assert warm.passed is True and warm.detail == "none in 2 timed steps (4 in the warm-up)"
    late = judged([3, 0, 0, 1])
    assert late.passed is False and "timed steps 4 (1, 0.40 s)" in late.detail
    assert judged([3, 1, None, 0]).passed is None  # a result from before the readings
    short = no_compile_in_timed_steps(Train.from_dict({"warmup_steps": 4, "log": [
        {"step": 1, "compiles": 2, "compile_s": 0.5}, {"step": 2, "compiles": 0, "compile_s": 0.0}]}))
    assert short.passed is False and "timed steps 1 (2" in short.detail  # no longer than its warm-up: all timed
    assert no_compile_in_timed_steps(Train()).passed is None
