"""The LoRA initialisation and the loss normalisation on a GPU (``pytest -m gpu``, on the GPU machine), where unsloth
runs and QLoRA loads: trl, unsloth and LLaMA-Factory (ms-swift and axolotl where their environments are built)
on Qwen2.5-0.5B-architecture random weights (from the Hub mirror), bf16, two micro-batches per step, LoRA and
QLoRA. On CPU (tests/test_frameworks_cpu.py, tests/test_formats_cpu.py) unsloth cannot run and QLoRA is refused;
here every framework must start from the same adapter weights (``lora_init_hash``: same seed before peft draws
them, same rounding over 4-bit layers, tests/audit/test_lora_init_qlora.py) and weigh every supervised token of a
step alike (``loss_normalization`` observed from the backpropagated loss of the first steps)."""
from __future__ import annotations

import pytest

from tests.cli import harness, results
from tests.helpers.hub_mirror import mirror_env

pytestmark = pytest.mark.gpu

ARGS = ("framework=trl,unsloth,llamafactory,swift,axolotl", "model=qwen2.5-0.5b", "model.weights=random",
        "train.max_steps=4", "train.measure_warmup_steps=4", "train.max_length=512", "train.batch_size=4",
        "train.grad_accum=2", "train.quantization=none,4bit", "env_auto_build=false")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, hub_mirror):
    out = tmp_path_factory.mktemp("init-loss-gpu")
    run = harness("run", *ARGS, f"results_dir={out}", "report=false", "-m", env=mirror_env(hub_mirror), timeout=3000)
    return run, [r for r in results(out) if r["status"] == "ok"]


def test_the_strict_audit_passes_with_the_new_fields(sweep):
    run, ok = sweep
    assert "0 sweep point(s) failing the strict fairness audit" in run.stdout, run.stdout[-4000:]
    names = {r["framework"]["name"] for r in ok}
    assert {"trl", "unsloth", "llamafactory"} <= names, run.stdout[-3000:]


@pytest.mark.parametrize("quantization", ["none", "4bit"])
def test_same_lora_weights_and_same_token_weighting(sweep, quantization):
    _, ok = sweep
    point = {r["framework"]["name"]: r["audit"] for r in ok if r["job"]["train"]["quantization"] == quantization}
    hashes = {name: audit["lora_init_hash"] for name, audit in point.items()}
    assert len(set(hashes.values())) == 1 and None not in hashes.values(), hashes
    for name, audit in point.items():
        assert (audit["loss_normalization"], audit["loss_normalization_source"]) == ("step_token_mean", "observed"), \
            (name, audit["loss_normalization"], audit["loss_normalization_steps"], audit["notes"])
