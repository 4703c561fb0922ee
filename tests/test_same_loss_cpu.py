"""The same-loss control (``profile.loss=transformers``, issue 15 item 4) through the real CLI, runner and worker.

trl and LLaMA-Factory really train on CPU (the embedded tiny model, float32). The control switches trl from
its fused, chunked LM head to the full logits and transformers' ForCausalLMLoss, which the run reads back
from its live trainer and model; LLaMA-Factory already computes that loss, so the control leaves it as it
is and says so. The loss is the same math either way: every step's loss agrees with the native path's.
An unprofiled job, and the frameworks' native arguments, are untouched by any of it.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from harness.config.job import job_hash, point_hash, unprofiled_point_hash
from tests.cli import harness, results
from tests.recipes.golden import FRAMEWORKS, GOLDEN, JOBS, job_for, native

# float32 on CPU: trl's tiles (4096 tokens x 32768 vocabulary, an online logsumexp in float32) and one
# cross_entropy over the whole row differ in summation order only; over 3 optimizer steps at lr 2e-3 that
# stays far below 1e-5 of the loss. A different loss (another mask, a missing shift) moves it by >1e-2.
SAME_MATH_REL = 1e-5
TINY = Path(__file__).resolve().parents[1] / "harness" / "assets" / "tiny"  # model=tiny, the default


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """trl and LLaMA-Factory, each natively and under the control: one sweep, four runs (~1 minute)."""
    out = tmp_path_factory.mktemp("same_loss")
    proc = harness("run", "framework=trl,llamafactory", "experiment=cpu_smoke", "profile=memory",
                   "profile.loss=null,transformers", "train.max_steps=3", "train.measure_warmup_steps=1",
                   f"results_dir={out / 'results'}", "report=false", "-m", timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = {(r["framework"]["name"], r["job"]["profile"].get("loss")): r for r in results(out / "results")}
    assert len(runs) == 4 and all(r["status"] == "ok" for r in runs.values()), {k: r["reason"] for k, r in runs.items()}
    return runs


def _losses(run: dict) -> list[float]:
    return [step["loss"] for step in run["train"]["log"] if "loss" in step]


def test_the_control_switches_trl_to_full_logits_and_transformers_loss_read_back(sweep):
    fused = sweep[("trl", None)]["profile"]["loss_path"]
    assert fused["requested"] == "native" and fused["micro_steps"] == 3
    assert fused["head_calls"] == 0 and fused["common_loss_calls"] == 0  # the head's weight, never the module
    assert fused["compute_loss"] == fused["trainer_compute_loss"] == "trl.trainer.sft_trainer.SFTTrainer.compute_loss"
    assert fused["path"].startswith("no full logits")
    common = sweep[("trl", "transformers")]["profile"]["loss_path"]
    assert common["requested"] == "transformers"
    assert common["compute_loss"] == "harness.worker.common_loss.common_compute_loss"
    assert common["common_loss_calls"] == common["head_calls"] == common["micro_steps"] == 3
    vocab = json.loads((TINY / "config.json").read_text())["vocab_size"]
    assert common["logits_shape"][0] == 4 and common["logits_shape"][-1] == vocab  # batch x length x vocabulary
    assert common["logits_dtype"] == "float32" and common["loss_dtype"] == "float32"
    assert common["loss_function"] == "transformers.loss.loss_utils.ForCausalLMLoss"
    assert common["path"].startswith("full logits (float32")


def test_llamafactory_already_runs_that_loss_so_the_control_changes_nothing_and_says_so(sweep):
    for loss in (None, "transformers"):
        path = sweep[("llamafactory", loss)]["profile"]["loss_path"]
        assert path["head_calls"] == path["micro_steps"] == 3 and path["common_loss_calls"] == 0
        assert path["model_loss_function"] == "transformers.loss.loss_utils.ForCausalLMLoss"
        assert path["compute_loss"] == "llamafactory.train.sft.trainer.CustomSeq2SeqTrainer.compute_loss"
    assert any("nothing switched" in n for n in sweep[("llamafactory", "transformers")]["profile"]["loss_path"]["notes"])
    # the very same code ran: the very same losses
    assert _losses(sweep[("llamafactory", "transformers")]) == _losses(sweep[("llamafactory", None)])


def test_every_step_loss_agrees_with_the_native_path(sweep):
    native, control = _losses(sweep[("trl", None)]), _losses(sweep[("trl", "transformers")])
    assert len(native) == len(control) == 3
    assert control == pytest.approx(native, rel=SAME_MATH_REL)
    # under the control trl and LLaMA-Factory compute one loss implementation on the same batches
    assert control == pytest.approx(_losses(sweep[("llamafactory", "transformers")]), rel=SAME_MATH_REL)


def test_each_control_run_is_its_own_labelled_job_explaining_the_unprofiled_point(sweep):
    for fw in ("trl", "llamafactory"):
        native, control = sweep[(fw, None)], sweep[(fw, "transformers")]
        assert native["run_dir"] != control["run_dir"] and native["job_hash"] != control["job_hash"]
        assert unprofiled_point_hash(native["job"]) == unprofiled_point_hash(control["job"])


def test_the_control_never_changes_a_framework_argument_nor_an_unprofiled_job():
    golden = json.loads(GOLDEN.read_text())
    for fw in FRAMEWORKS:
        for name in JOBS:
            plain = job_for(name, fw)
            assert "profile" not in plain  # an unprofiled job.json carries no trace of it
            controlled = job_for(name, fw, profile="memory", **{"profile.loss": "transformers"})
            assert native(fw, controlled) == golden[f"{fw}/{name}"]["native_args"]
    # a profiled job from before profile.loss hashes as it did (the field at its default is left out)
    profiled = job_for("throughput_7b", "trl", profile="memory")
    before = {k: v for k, v in profiled.items() if k != "runtime"}
    before["profile"] = {k: v for k, v in before["profile"].items() if k != "loss"}
    spec = {k: v for k, v in profiled.items() if k != "runtime"}
    assert job_hash(spec) == job_hash(before) and point_hash(spec) == point_hash(before)


def test_the_control_is_refused_by_name_where_it_would_mean_nothing(tmp_path):
    for args, message in (
            (["profile.loss=transformers"], "profile.loss needs profile=memory|time"),
            (["profile=time", "profile.loss=fused"], "profile.loss must be one of transformers"),
            (["profile=time", "profile.loss=transformers", "recipe=recommended"], "profile.loss needs recipe=identical")):
        proc = harness("run", "framework=fake", *args, f"results_dir={tmp_path}")
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert not list(tmp_path.rglob("result.json"))


def test_watching_for_the_trainer_keeps_trainer_init_as_it_was():
    """ms-swift reads Trainer.__init__'s signature to name its tokenizer argument (swift/trainers/mixin.py:122)."""
    import transformers

    from harness.worker.loss_path import LossPathProbe

    original = transformers.Trainer.__init__
    probe = LossPathProbe("transformers", "own")
    with probe.watching():
        assert transformers.Trainer.__init__ is not original
        assert inspect.signature(transformers.Trainer.__init__) == inspect.signature(original)
    assert transformers.Trainer.__init__ is original
    with pytest.raises(Exception, match="could not be replaced"):  # no trainer of this run was built
        probe.on_train_begin(None, None, None, model=None)
