"""The checkpointing-kind control (``profile.checkpointing=reentrant``, docs/explain.md section 6) through the real
CLI, runner and worker: trl really trains on CPU natively (non-reentrant, the identical recipe's pin) and with
torch's reentrant checkpoint function, the kind unsloth's own is. The audit reads the kind back from the live
Trainer; the math is the same (every step's loss and the evaluation loss equal); the Why section names the rerun
by its one change. The other adapters' arguments flip the same way; unsloth, which checkpoints reentrantly
already, is unavailable under it with that reason.
"""
from __future__ import annotations

import pytest

from harness.config.job import point_hash, unprofiled_point_hash
from tests.cli import harness, results

# real framework training on CPU: the slow tier, which .ci/run runs after the default one (README)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """trl natively and under the control: one sweep, two runs (~1 minute)."""
    out = tmp_path_factory.mktemp("checkpointing")
    proc = harness("run", "framework=trl", "experiment=cpu_smoke", "profile=time", "profile.checkpointing=null,reentrant",
                   "train.max_steps=3", "train.measure_warmup_steps=1", f"results_dir={out / 'results'}",
                   "report=false", "-m", timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = {r["job"]["profile"].get("checkpointing"): r for r in results(out / "results")}
    assert set(runs) == {None, "reentrant"} and all(r["status"] == "ok" for r in runs.values()), \
        {k: r["reason"] for k, r in runs.items()}
    return runs


def test_the_live_trainer_checkpoints_reentrantly_under_the_control_with_the_same_losses(sweep):
    own, control = sweep[None], sweep["reentrant"]
    assert own["audit"]["gradient_checkpointing_use_reentrant"] is False
    assert control["audit"]["gradient_checkpointing_use_reentrant"] is True
    assert own["audit"]["gradient_checkpointing"] is True and control["audit"]["gradient_checkpointing"] is True
    assert [s["loss"] for s in control["train"]["log"]] == [s["loss"] for s in own["train"]["log"]]
    assert control["eval"]["loss"] == pytest.approx(own["eval"]["loss"], rel=1e-6)
    assert control["audit"]["lora_B_nonzero"]  # the adapters trained: reentrant checkpointing got its input grads


def test_the_control_is_its_own_point_and_explains_the_native_one(sweep):
    own, control = sweep[None], sweep["reentrant"]
    assert control["point_hash"] != own["point_hash"] and control["job_hash"] != own["job_hash"]
    assert unprofiled_point_hash(control["job"]) == unprofiled_point_hash(own["job"])


def test_the_why_section_names_the_rerun_by_its_one_change(sweep):
    from harness.records import Result
    from harness.report.why import why_sections

    (section,) = why_sections([Result.from_dict(r) for r in sweep.values()]).values()
    rows = {row["label"]: row for row in section["time"]["rows"]}
    assert set(rows) == {"trl-1.16.0", "trl-1.16.0 (checkpointing=reentrant)"}
    assert rows["trl-1.16.0 (checkpointing=reentrant)"]["control"] and not rows["trl-1.16.0"]["control"]
    (sentence,) = section["time"]["controls"]
    assert sentence.startswith("trl-1.16.0 (checkpointing=reentrant): the one change moves")


def _job(framework: str, checkpointing: str | None) -> dict:
    from tests.helpers.jobs import make_job

    extra = {"profile": "time", "profile.checkpointing": checkpointing} if checkpointing else {}
    return make_job({"framework": framework, **extra})


@pytest.mark.parametrize("framework", ["trl", "swift"])
def test_trainer_frameworks_pass_use_reentrant_to_the_trainer(framework):
    from harness.frameworks.registry import adapter as adapter_for

    def kwargs(job: dict) -> dict:
        native = adapter_for(framework).native_args(job)
        section = native.get("sft_config") or native.get("training_arguments") or native
        return section["gradient_checkpointing_kwargs"]

    assert kwargs(_job(framework, None)) == {"use_reentrant": False}
    assert kwargs(_job(framework, "reentrant")) == {"use_reentrant": True}


def test_llamafactory_and_axolotl_take_it_in_their_own_keys():
    from harness.frameworks.registry import adapter as adapter_for

    lf = adapter_for("llamafactory")
    assert lf.native_args(_job("llamafactory", None))["use_reentrant_gc"] is False
    assert lf.native_args(_job("llamafactory", "reentrant"))["use_reentrant_gc"] is True
    axolotl = adapter_for("axolotl")
    assert axolotl.native_args(_job("axolotl", "reentrant"))["gradient_checkpointing_kwargs"] == {"use_reentrant": True}


def test_unsloth_is_unavailable_under_it_with_the_reason(monkeypatch):
    import torch

    from harness.frameworks import unsloth
    from harness.frameworks.base import FrameworkUnavailable

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # past the CUDA check, before unsloth's import
    job = _job("unsloth", "reentrant")
    with pytest.raises(FrameworkUnavailable, match="its own reentrant function"):
        unsloth.import_framework(job)


def test_the_field_at_its_default_leaves_a_profiled_job_hashed_as_before():
    job = _job("trl", None)
    timed = {**job, "profile": {"kind": "time", "steps": 3}}
    assert point_hash({**timed, "profile": {**timed["profile"], "checkpointing": None}}) == point_hash(timed)


@pytest.mark.parametrize("args,message", [
    (("profile=time", "profile.checkpointing=maybe"), "profile.checkpointing must be one of reentrant or null"),
    (("profile.checkpointing=reentrant",), "profile.checkpointing needs profile=memory|time"),
    (("profile=time", "profile.checkpointing=reentrant", "train.gradient_checkpointing=false"),
     "profile.checkpointing needs train.gradient_checkpointing=true"),
    (("profile=time", "profile.checkpointing=reentrant", "recipe=recommended"),
     "profile.checkpointing needs recipe=identical"),
])
def test_bad_values_are_refused_in_one_line_before_anything_runs(tmp_path, args, message):
    proc = harness("run", "framework=trl", *args, f"results_dir={tmp_path / 'r'}", timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), proc.stderr
    assert not (tmp_path / "r").exists()
