"""Real training in the real frameworks on CPU: the README's quick-start comparison, end to end.

trl, LLaMA-Factory, ms-swift and axolotl train the embedded tiny model under their own environments; unsloth,
which needs CUDA, is recorded as unavailable. They must build identical jobs (the strict audit passes),
learn (loss falls, LoRA weights change) and agree with our evaluator.
"""
from __future__ import annotations

import pytest

from harness.frameworks import registry
from tests.cli import harness, results


@pytest.fixture(scope="module")
def default_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart")
    run = harness("run", f"results_dir={out / 'results'}", f"reports_dir={out / 'reports'}", "-m", timeout=1800)
    return run, {r["framework"]["name"]: r for r in results(out / "results")}, out


def test_quickstart_sweep_succeeds_with_a_report(default_sweep):
    run, records, out = default_sweep
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert set(records) == {"trl", "unsloth", "llamafactory", "swift", "axolotl"}
    assert list((out / "reports").glob("default-*.html")), run.stdout
    assert "0 sweep point(s) failing the strict fairness audit" in run.stdout


def test_unsloth_is_unavailable_without_cuda(default_sweep):
    _, records, _ = default_sweep
    assert records["unsloth"]["status"] == "unavailable"
    assert "CUDA" in records["unsloth"]["reason"]


@pytest.mark.parametrize("framework", ["trl", "llamafactory", "swift", "axolotl"])
def test_framework_really_trains_on_cpu(default_sweep, framework):
    _, records, _ = default_sweep
    record = records[framework]
    assert record["status"] == "ok", record["reason"] + record["log_tail"]
    checks = {c["name"]: c for c in record["checks"]}
    for name in ("loss_fell", "grad_norm_positive", "lora_weights_changed", "tokens_match_framework",
                 "eval_loss_matches_framework"):
        assert checks[name]["passed"] is True, checks[name]
    log = record["train"]["log"]
    assert len(log) == record["job"]["train"]["max_steps"] == 60
    assert record["framework"]["packages"][registry.adapter(framework).distribution]
    assert record["eval"]["loss"] < log[0]["loss"]


@pytest.mark.parametrize("other", ["llamafactory", "swift", "axolotl"])
def test_trl_and_other_built_the_same_job(default_sweep, other):
    _, records, _ = default_sweep
    trl, theirs = records["trl"]["audit"], records[other]["audit"]
    for field in ("first_batch_hash", "trainable_params", "lora_alpha", "lora_modules", "effective_batch",
                  "loss_mask_share", "lr_scheduler", "optimizer"):
        assert trl[field] == theirs[field] and trl[field] is not None, field
    # Same tokens, same order, same math: the loss curves agree to float tolerance.
    for a, b in zip(records["trl"]["train"]["log"], records[other]["train"]["log"]):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-3)


def test_every_framework_starts_from_the_same_lora_weights(default_sweep):
    # Read at on_train_begin, before the first step: the same seed set right before peft draws the A matrices
    # (trl's SFTTrainer, LLaMA-Factory's get_train_args, ms-swift's seed_everything, the axolotl plugin's
    # pre_lora_load), the same modules wrapped in the same order: the same bits, across three peft versions.
    _, records, _ = default_sweep
    audits = {fw: records[fw]["audit"] for fw in ("trl", "llamafactory", "swift", "axolotl")}
    hashes = {fw: a["lora_init_hash"] for fw, a in audits.items()}
    assert len(set(hashes.values())) == 1 and None not in hashes.values(), hashes
    assert all(a["lora_init_B_nonzero"] is False and a["lora_init_read_at"] == "train_begin" for a in audits.values())


def test_every_framework_weighs_the_tokens_of_a_step_alike(default_sweep):
    # One micro-batch per step here: every normalisation is the token mean; what was observed must say so, from
    # the backpropagated loss of each probed step (grad_accum=2: tests/test_formats_cpu.py, tests/test_scale.py).
    _, records, _ = default_sweep
    for fw in ("trl", "llamafactory", "swift", "axolotl"):
        audit = records[fw]["audit"]
        assert (audit["loss_normalization"], audit["loss_normalization_source"]) == ("step_token_mean", "observed"), fw
        assert all(s["weight_x_step_tokens"] == pytest.approx([1.0], rel=1e-4) for s in audit["loss_normalization_steps"])
