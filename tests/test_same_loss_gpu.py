"""The same-loss control on a GPU (``pytest -m gpu``; needs HARNESS_HUB_MIRROR for the Qwen2.5-0.5B config):
unsloth, which CPU cannot run, switched from its fused cross-entropy to the full logits and transformers'
ForCausalLMLoss, read back, before the 7B control runs of ``h200_session.sh`` (CONTROL=same_loss); trl too,
in bf16. Four short runs of random-weight Qwen2.5-0.5B (~3 minutes)."""
from __future__ import annotations

import pytest

from tests.helpers.hub_mirror import ok_runs_of_a_mirror_sweep

pytestmark = pytest.mark.gpu

ARGS = ("model=qwen2.5-0.5b", "model.weights=random", "train.max_steps=4", "train.measure_warmup_steps=1",
        "train.max_length=512", "profile=time", "profile.steps=1", "profile.loss=null,transformers")
# bf16 on the GPU: trl's tiles and unsloth's chunks accumulate the head's matmul in another order than one
# full-logits matmul, and the GPU's reductions are not deterministic between runs (the H200's repeats of one
# framework: eval loss 1.4e-3 apart after 48 steps); 4 steps of the same loss stay within 5e-3 of each other.
SAME_LOSS_REL = 5e-3


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, hub_mirror):
    return ok_runs_of_a_mirror_sweep(tmp_path_factory.mktemp("same-loss-gpu"), hub_mirror,
                                     ("framework=trl,unsloth", *ARGS), "loss")


@pytest.mark.parametrize("framework", ["trl", "unsloth"])
def test_the_fused_loss_is_replaced_by_full_bf16_logits_and_transformers_loss(sweep, framework):
    own = sweep[(framework, None)]["profile"]["loss_path"]
    assert own["micro_steps"] == 4 and own["head_calls"] == 0, own  # fused: the head module never runs
    common = sweep[(framework, "transformers")]["profile"]["loss_path"]
    assert common["common_loss_calls"] == common["head_calls"] == common["micro_steps"] == 4, common
    assert common["logits_dtype"] == "bfloat16" and common["loss_dtype"] == "float32"
    assert common["logits_shape"][-1] == 151936  # Qwen2.5-0.5B's vocabulary, every position


@pytest.mark.parametrize("framework", ["trl", "unsloth"])
def test_every_step_loss_agrees_with_the_framework_s_own(sweep, framework):
    def losses(run):
        return [s["loss"] for s in run["train"]["log"] if "loss" in s]

    own, common = losses(sweep[(framework, None)]), losses(sweep[(framework, "transformers")])
    assert len(own) == len(common) == 4 and common == pytest.approx(own, rel=SAME_LOSS_REL)
