"""The LoRA input cast control on a GPU (``pytest -m gpu``), before the 7B runs of ``h200_session.sh``
(CONTROL=lora_cast; docs/explain.md section 3).

Known answer, no framework: a real peft LoRA model (bf16 base, fp32 adapters) under CUDA bf16 autocast gives
the same bits with and without the input cast, and torch.profiler sees the activation-sized copy kernels the
cast costs go away. Then the real workers on random-weight Qwen2.5-0.5B (needs HARNESS_HUB_MIRROR): trl's
casts read back natively and none under the control; unsloth switched and watched nothing (~3 minutes).
"""
from __future__ import annotations

import pytest
import torch

from tests.helpers.hub_mirror import ok_runs_of_a_mirror_sweep
from tests.test_lora_cast import BF16, _peft_model, _step

pytestmark = pytest.mark.gpu

ARGS = ("model=qwen2.5-0.5b", "model.weights=random", "train.max_steps=4", "train.measure_warmup_steps=1",
        "train.max_length=512", "profile=time", "profile.steps=1", "profile.lora_input_cast=null,off")
QWEN_05B_LORA_LAYERS = 24 * 7
# bf16 on the GPU: the first step's loss is a deterministic forward of the same bits; later steps follow
# gradients whose reductions (attention's backward) are not bit-deterministic between runs.
LATER_STEPS_REL = 5e-3


def _copy_kernels(cast: bool) -> int:
    """Launches of dtype-converting copy kernels in one training step of the known-answer model, on the GPU."""
    from torch.profiler import ProfilerActivity, profile

    model, x0 = _peft_model().cuda(), torch.randn(16, 256, 64, device="cuda").to(BF16)
    _step(model, x0, cast, device="cuda")  # warm-up: cuBLAS handles, allocator
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        _step(model, x0, cast, device="cuda")
        torch.cuda.synchronize()
    return sum(e.count for e in prof.key_averages() if "copy_kernel" in e.key)


def test_on_the_gpu_the_same_bits_and_the_activation_copies_go_away():
    model = _peft_model().cuda()
    torch.manual_seed(1)
    x0 = torch.randn(4, 16, 64, device="cuda").to(BF16)
    y_on, dx_on, g_on, _ = _step(model, x0, cast=True, device="cuda")
    y_off, dx_off, g_off, _ = _step(model, x0, cast=False, device="cuda")
    assert torch.equal(y_on, y_off) and torch.equal(dx_on, dx_off)
    assert all(torch.equal(g_on[n], g_off[n]) for n in g_on)
    # 8 LoRA layers x (forward + recompute) x 2 copies, and the backward's 2 per layer: 48 fewer launches (session 9
    # saw 12: the block's nn.LayerNorm, fp32 under autocast, left q, k and v nothing to cast; now a bf16 RMSNorm)
    assert _copy_kernels(True) - _copy_kernels(False) >= 8 * 6


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, hub_mirror):
    # the mirror through the fixture: the session's environment has HARNESS_HUB_MIRROR unset (tests/conftest.py)
    return ok_runs_of_a_mirror_sweep(tmp_path_factory.mktemp("lora-cast-gpu"), hub_mirror,
                                     ("framework=trl,unsloth", *ARGS), "lora_input_cast")


def test_trl_casts_every_lora_input_natively_and_none_under_the_control(sweep):
    own, off = sweep[("trl", None)]["profile"]["lora_cast"], sweep[("trl", "off")]["profile"]["lora_cast"]
    assert own["layers"] == off["switched"] == QWEN_05B_LORA_LAYERS
    assert own["casts"] == 2 * QWEN_05B_LORA_LAYERS * 4 and own["autocast"] == "bfloat16", own
    assert off["casts"] == 0 and off["skipped"] == own["casts"], off

    def losses(run):
        return [s["loss"] for s in run["train"]["log"] if "loss" in s]
    native, control = losses(sweep[("trl", None)]), losses(sweep[("trl", "off")])
    assert control[0] == native[0] and control == pytest.approx(native, rel=LATER_STEPS_REL)


def test_unsloth_runs_its_own_lora_path_so_nothing_is_switched_or_watched(sweep):
    for cast in (None, "off"):
        rec = sweep[("unsloth", cast)]["profile"]["lora_cast"]
        assert rec["layers"] == QWEN_05B_LORA_LAYERS and rec["switched"] == 0 and not rec["watched"], rec
    assert any(n.startswith("nothing switched") for n in sweep[("unsloth", "off")]["profile"]["lora_cast"]["notes"])
