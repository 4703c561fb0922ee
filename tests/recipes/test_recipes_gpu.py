"""Both recipes on a GPU (``pytest -m gpu``, on the GPU machine after ``h200_session.sh recipes_setup``): the
features CPU cannot run are read back from the live objects there. Qwen2.5-0.5B-architecture random weights
(from the Hub mirror), a few steps: Liger active in trl and LLaMA-Factory where liger-kernel is installed
(skipped otherwise), unsloth's padding-free batching and offloaded checkpointing active, axolotl's LoRA kernels,
varlen SDPA over its packed rows, TF32 and data loader workers active, each recommended run the same quality as
its identical twin."""
from __future__ import annotations

import pytest

from tests.cli import harness, results
from tests.helpers.hub_mirror import mirror_env

pytestmark = pytest.mark.gpu

ARGS = ("model=qwen2.5-0.5b", "model.weights=random", "train.max_steps=12", "train.measure_warmup_steps=4",
        "train.max_length=512", "recipe=identical,recommended")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, hub_mirror):
    out = tmp_path_factory.mktemp("recipes-gpu")
    run = harness("run", "framework=trl,unsloth,llamafactory,axolotl", *ARGS, f"results_dir={out}", "report=false",
                  "-m", env=mirror_env(hub_mirror), timeout=3000)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {(r["framework"]["name"], (r.get("recipe") or {}).get("name", "identical")): r for r in results(out)}


def _status(record: dict, feature: str) -> str:
    return {f["id"]: f["status"] for f in record["recipe"]["features"]}[feature]


@pytest.mark.parametrize("framework", ["trl", "llamafactory", "axolotl"])
def test_liger_is_active_where_installed(sweep, framework):
    record = sweep[(framework, "recommended")]
    assert record["status"] == "ok", record["reason"]
    status = _status(record, "liger")
    if status == "unavailable":
        pytest.skip(f"liger-kernel not in the {framework} env: {record['recipe']['features']}")
    assert status == "active"


def test_unsloth_padding_free_and_offloaded_checkpointing_are_active(sweep):
    record = sweep[("unsloth", "recommended")]
    assert record["status"] == "ok", record["reason"]
    assert _status(record, "padding_free") == "active" and _status(record, "offloaded_gc") == "active"
    assert sweep[("unsloth", "identical")]["audit"]["batch_padding_free"] is False


def test_axolotl_kernels_varlen_packing_tf32_and_workers_are_active(sweep):
    record = sweep[("axolotl", "recommended")]
    assert record["status"] == "ok", record["reason"]
    for feature in ("multipack", "sdpa_varlen", "lora_kernels", "fused_adamw", "tf32", "dataloader_workers"):
        assert _status(record, feature) == "active", (feature, record["recipe"]["features"])
    checks = {c["name"]: c for c in record["checks"]}
    assert checks["tokens_match_framework"]["passed"] is True, checks["tokens_match_framework"]


@pytest.mark.parametrize("framework", ["trl", "unsloth", "llamafactory", "axolotl"])
def test_every_applied_feature_is_seen(sweep, framework):
    record = sweep[(framework, "recommended")]
    assert not [f for f in record["recipe"]["features"] if f["status"] == "not seen"], record["recipe"]["features"]
