"""The LoRA input cast control (``profile.lora_input_cast=off``) through the real CLI, runner and worker.

trl really trains on CPU (the embedded tiny model) in bf16 (``train.precision=bf16``: a bf16 model, peft's
fp32 adapters, and the Trainer's bf16 autocast, which accelerate puts around the model's forward on CPU as on
a GPU), the H200 job's precision setup at a CPU's size. Its own profiled run reads back peft's casts; the
control switches them off in every LoRA layer and reads back that none ran. The math is the same bits: every
step's loss and gradient norm, and the evaluation loss, are equal, not close.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config.job import unprofiled_point_hash
from tests.cli import harness, results

TINY = Path(__file__).resolve().parents[1] / "harness" / "assets" / "tiny"  # model=tiny, the default
LORA_TARGETS = 7  # the identical recipe's q, k, v, o, gate, up, down


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """trl natively and under the control: one sweep, two runs (~1 minute)."""
    out = tmp_path_factory.mktemp("lora_cast")
    proc = harness("run", "framework=trl", "experiment=cpu_smoke", "profile=time", "profile.lora_input_cast=null,off",
                   "train.precision=bf16", "train.max_steps=3", "train.measure_warmup_steps=1",
                   f"results_dir={out / 'results'}", "report=false", "-m", timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = {r["job"]["profile"].get("lora_input_cast"): r for r in results(out / "results")}
    assert set(runs) == {None, "off"} and all(r["status"] == "ok" for r in runs.values()), \
        {k: r["reason"] for k, r in runs.items()}
    return runs


def test_trl_casts_each_lora_input_natively_and_the_control_switches_every_layer_off(sweep):
    layers = json.loads((TINY / "config.json").read_text())["num_hidden_layers"] * LORA_TARGETS
    own, off = sweep[None]["profile"]["lora_cast"], sweep["off"]["profile"]["lora_cast"]
    assert own["requested"] == "native" and own["layers"] == layers and own["switched"] == 0 and own["watched"]
    # every LoRA layer casts once in its forward and once in its recomputed forward (gradient checkpointing)
    assert own["micro_steps"] == 3 and own["calls"] == own["casts"] == 2 * layers * 3 and own["skipped"] == 0
    assert (own["cast_from"], own["cast_to"], own["autocast"]) == ("bfloat16", "float32", "bfloat16")
    assert off["requested"] == "off" and off["layers"] == off["switched"] == layers and off["watched"]
    assert off["casts"] == 0 and off["skipped"] == off["calls"] == own["casts"]
    assert off["summary"].startswith(f"0 casts, {own['casts']} skipped (bfloat16 -> float32, under bfloat16 autocast)")
    assert sweep["off"]["profile"]["time"]["status"] == "ok"


def test_the_same_bits_every_step_and_in_the_evaluation(sweep):
    def log(run, key):
        return [step[key] for step in run["train"]["log"] if key in step]
    for key in ("loss", "grad_norm"):
        assert len(log(sweep[None], key)) == 3 and log(sweep["off"], key) == log(sweep[None], key), key
    assert sweep["off"]["eval"]["loss"] == sweep[None]["eval"]["loss"]
    assert sweep["off"]["audit"]["lora_init_hash"] == sweep[None]["audit"]["lora_init_hash"]


def test_the_control_run_is_its_own_labelled_job_explaining_the_unprofiled_point(sweep):
    own, off = sweep[None], sweep["off"]
    assert own["run_dir"] != off["run_dir"] and own["job_hash"] != off["job_hash"]
    assert own["point_hash"] != off["point_hash"]
    assert unprofiled_point_hash(own["job"]) == unprofiled_point_hash(off["job"])
