"""Real multi-turn training in trl and LLaMA-Factory on CPU: the shipped ShareGPT and messages samples.

Each sweep trains the embedded tiny model for a few steps in both frameworks' own environments. The strict
audit must pass, the first batch (tokens and labels) and the loss-mask share must be the same, the per-step
losses must agree as on alpaca (tests/test_frameworks_cpu.py), and our evaluator's eval loss must agree with
each framework's own: the same supervised tokens in training and evaluation.
"""
from __future__ import annotations

import pytest

from tests.cli import harness, results

# real framework training on CPU: the slow tier, which .ci/run runs after the default one (README)
pytestmark = pytest.mark.slow

# Two micro-batches of 2 per step (cpu_smoke's 4 samples a step): multi-turn records hold very different numbers
# of supervised tokens, so how a step's loss is normalised over its micro-batches matters, and is audited.
RECIPE = ("framework=trl,llamafactory", "experiment=cpu_smoke", "train.max_steps=6", "train.max_length=512",
          "train.measure_warmup_steps=1", "train.batch_size=2", "train.grad_accum=2")


@pytest.fixture(scope="module", params=[("tiny_sharegpt", "all_assistant"), ("tiny_messages", "last_assistant")],
                ids=["sharegpt-all_assistant", "messages-last_assistant"])
def sweep(request, tmp_path_factory):
    dataset, loss_on = request.param
    out = tmp_path_factory.mktemp(dataset)
    run = harness("run", *RECIPE, f"dataset={dataset}", "dataset.format=auto", f"dataset.loss_on={loss_on}",
                  f"results_dir={out / 'results'}", f"reports_dir={out / 'reports'}", "-m", timeout=900)
    return run, {r["framework"]["name"]: r for r in results(out / "results")}, loss_on


def test_both_frameworks_train_and_pass_the_strict_audit(sweep):
    run, records, _ = sweep
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "detected" in run.stdout  # dataset.format=auto says what it found
    assert "0 sweep point(s) failing the strict fairness audit" in run.stdout
    for name in ("trl", "llamafactory"):
        record = records[name]
        assert record["status"] == "ok", record["reason"] + record["log_tail"]
        checks = {c["name"]: c for c in record["checks"]}
        for check in ("grad_norm_positive", "lora_weights_changed", "tokens_match_framework",
                      "eval_loss_matches_framework"):
            assert checks[check]["passed"] is True, (name, checks[check])


def test_same_tokens_same_supervision_same_losses(sweep):
    _, records, loss_on = sweep
    trl, lf = records["trl"], records["llamafactory"]
    assert trl["job"]["dataset"]["loss_on"] == loss_on and trl["job"]["dataset"]["format"] in ("sharegpt", "messages")
    for field in ("first_batch_hash", "loss_mask_share", "first_batches_supervised", "train_set_hash",
                  "eval_set_hash"):
        assert trl["audit"][field] == lf["audit"][field] and trl["audit"][field] is not None, field
    # Every assistant turn supervised covers more of the batch than the last one alone.
    share = trl["audit"]["loss_mask_share"]
    assert (share > 0.4) if loss_on == "all_assistant" else (share < 0.3), share
    assert len(trl["train"]["log"]) == len(lf["train"]["log"]) == 6
    for a, b in zip(trl["train"]["log"], lf["train"]["log"]):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-3)
    assert trl["eval"]["loss"] == pytest.approx(lf["eval"]["loss"], abs=1e-3)


def test_both_weigh_every_supervised_token_of_a_step_alike(sweep):
    # trl computes the loss in its own compute_loss (fused LM head), LLaMA-Factory in the model's forward; both
    # divide each micro-batch's token-loss sum by the step's supervised tokens, as observed in the first step.
    _, records, _ = sweep
    for name in ("trl", "llamafactory"):
        audit = records[name]["audit"]
        assert (audit["loss_normalization"], audit["loss_normalization_source"]) == ("step_token_mean", "observed")
        (step,) = audit["loss_normalization_steps"]  # the probe stays in the one warm-up step
        assert step["micro_batches"] == 2 and step["trainer_items"] == sum(step["supervised"])
        assert step["weight_x_step_tokens"] == pytest.approx([1.0, 1.0], rel=1e-4)
    assert records["trl"]["audit"]["lora_init_hash"] == records["llamafactory"]["audit"]["lora_init_hash"]
