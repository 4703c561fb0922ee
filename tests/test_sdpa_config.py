"""train.sdpa_backend in the config: validated by name before anything runs, and out of the hash at its default
(auto), so every committed result keeps its job and point hash; a named backend is another job and point."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config.job import job_hash, point_hash, unprofiled_point_hash
from harness.config.preflight import compose_job
from harness.config.schema import SDPA_BACKENDS, ConfigError
from harness.config.validation import validate
from tests.cli import harness

REPO_ROOT = Path(__file__).resolve().parents[1]
# trl's unprofiled-point twin of session 7's time profile: a known job, its hash in its folder's name
KNOWN = (REPO_ROOT / "results" / "h200" / "session7" / "throughput_7b" / "qwen2.5-7b-medical-4ddff7cf611c"
         / "trl-1.16.0-5738153f0b36" / "r0" / "result.json")


def test_the_default_is_auto_and_every_backend_composes():
    assert compose_job([]).train.sdpa_backend == "auto"
    for backend in SDPA_BACKENDS:
        cfg = compose_job([f"train.sdpa_backend={backend}"])
        validate(cfg, cuda_available=True)
        assert cfg.train.sdpa_backend == backend


@pytest.mark.parametrize("overrides,cuda,message", [
    (["train.sdpa_backend=fast"], True, "train.sdpa_backend must be one of auto|cudnn|flash|efficient|math, got 'fast'"),
    (["train.sdpa_backend=efficient"], False, "train.sdpa_backend=efficient needs a CUDA GPU"),
    (["train.sdpa_backend=cudnn"], False, "train.sdpa_backend=cudnn needs a CUDA GPU"),
    (["train.sdpa_backend=math", "model.attn_implementation=eager"], True,
     "train.sdpa_backend=math needs model.attn_implementation=sdpa"),
    (["train.sdpa_backend=efficient", "recipe=recommended", "framework=trl"], True,
     "train.sdpa_backend=efficient needs recipe=identical"),
])
def test_bad_settings_are_refused_naming_the_field(overrides, cuda, message):
    with pytest.raises(ConfigError, match=message.replace("|", r"\|").replace("(", r"\(")):
        validate(compose_job(overrides), cuda_available=cuda)


def test_flash_and_math_run_on_a_cpu():
    for backend in ("flash", "math"):
        validate(compose_job([f"train.sdpa_backend={backend}"]), cuda_available=False)


def test_the_cli_refuses_a_bad_backend_in_one_line_before_anything_runs(tmp_path):
    proc = harness("run", "framework=fake", "train.sdpa_backend=fast", f"results_dir={tmp_path}", timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "train.sdpa_backend" in lines[0] and "'fast'" in lines[0]
    assert not list(tmp_path.rglob("*.json"))


def test_a_known_job_keeps_its_hashes_with_the_field_at_its_default():
    record = json.loads(KNOWN.read_text())
    job = record["job"]
    assert "sdpa_backend" not in job["train"]  # recorded before the field existed
    assert job_hash(job) == record["job_hash"] == KNOWN.parent.parent.name.rsplit("-", 1)[1]
    with_default = json.loads(json.dumps(job))
    with_default["train"]["sdpa_backend"] = "auto"
    assert job_hash(with_default) == record["job_hash"] and point_hash(with_default) == record["point_hash"]
    pinned = json.loads(json.dumps(job))
    pinned["train"]["sdpa_backend"] = "efficient"
    assert job_hash(pinned) != record["job_hash"] and point_hash(pinned) != record["point_hash"]


def test_plan_hashes_auto_as_before_and_a_named_backend_as_another_point():
    from harness.cli.plan import plan_jobs

    plain = plan_jobs(["framework=trl"], False)[0]
    auto = plan_jobs(["framework=trl", "train.sdpa_backend=auto"], False)[0]
    math = plan_jobs(["framework=trl", "train.sdpa_backend=math"], False)[0]
    assert plain["job"]["train"]["sdpa_backend"] == "auto"  # written into job.json for the worker
    assert (plain["job_hash"], plain["point_hash"]) == (auto["job_hash"], auto["point_hash"])
    assert math["job_hash"] != plain["job_hash"] and math["point_hash"] != plain["point_hash"]
    assert math["run_dirs"] != plain["run_dirs"]


def test_a_profiled_sdpa_control_explains_the_point_of_the_framework_own_choice():
    from harness.cli.plan import plan_jobs

    plain = plan_jobs(["framework=trl"], False)[0]
    control = plan_jobs(["framework=trl", "profile=time", "train.sdpa_backend=math"], False)[0]
    assert unprofiled_point_hash(control["job"]) == plain["point_hash"]
    unprofiled = plan_jobs(["framework=trl", "train.sdpa_backend=math"], False)[0]
    assert unprofiled["point_hash"] != plain["point_hash"]  # unprofiled, it is a point of its own


def test_a_probe_that_runs_out_of_gpu_memory_is_repeated_at_batch_1(monkeypatch):
    """An out-of-memory probe is not "no backend can run it" (which would fail the strict audit): it is asked
    again at batch 1 and says so."""
    import torch

    from harness.worker import sdpa

    asked: list[int] = []

    def choice(q, *args, **kwargs):
        asked.append(q.shape[0])
        if q.shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return int(torch.nn.attention.SDPBackend.MATH)

    monkeypatch.setattr(torch, "_fused_sdp_choice", choice)
    shape = {"device": "cpu", "dtype": "float32", "batch": 4, "length": 8, "heads": 2, "kv_heads": 2, "head_dim": 4}
    out: dict = {}
    notes: list[str] = []
    assert sdpa._choices_within_memory(shape, out, notes) == {"padded": "math", "causal": "math"}
    assert asked == [4, 1, 1] and out["sdpa_probe"]["batch"] == 1 and "batch 1" in notes[0]
