"""The LoRA input cast control (``profile.lora_input_cast=off``) on real peft LoRA layers, no framework.

peft's LoRA forward copies each layer's input to the adapters' dtype (``_cast_input_dtype``); with a bf16
base and peft's fp32 adapters that is a bf16 -> fp32 copy of the whole activation, which bf16 autocast casts
straight back for the LoRA matmul. The control's claim is that switching it off removes the copies and
changes nothing else: under autocast the outputs and every gradient are the same bits. The probe that
switches it and counts the casts is checked on the same layers; the field is checked as bad input and as
part of the profiled job only.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from harness.frameworks.adapter import FrameworkUnavailable
from harness.worker.lora_cast import LoraCastProbe, lora_layers
from tests.cli import harness
from tests.recipes.golden import FRAMEWORKS, GOLDEN, JOBS, job_for, native

BF16 = torch.bfloat16


class RMSNorm(nn.Module):
    """Qwen2's RMSNorm: the statistics in fp32, the output in the input's dtype (bf16). Not nn.LayerNorm, which
    autocast runs in fp32: an fp32 input needs no cast to the fp32 adapters, so q, k and v would copy nothing
    (on the H200, session 9, only o's 12 copies a step went away)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x):
        h = x.float()
        return self.weight.to(x.dtype) * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype)


class Block(nn.Module):
    """q, k and v read one normed bf16 input (their input gradients add up in one buffer), o reads their mix."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.norm = RMSNorm(width)
        self.q, self.k, self.v = (nn.Linear(width, 48, bias=True) for _ in range(3))
        self.o = nn.Linear(48, width, bias=False)

    def forward(self, x):
        h = self.norm(x)
        return x + self.o(torch.tanh(self.q(h)) * self.k(h) + self.v(h))


class Stack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(2))

    def forward(self, x):
        for block in self.blocks:  # non-reentrant checkpointing, as every framework runs it: forward, then recompute
            x = checkpoint(block, x, use_reentrant=False)
        return x


def _peft_model() -> nn.Module:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = Stack().to(BF16)
    # init_lora_weights=False: B is random too, so the LoRA branch reaches the outputs and every gradient
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q", "k", "v", "o"],
                                            lora_dropout=0.0, init_lora_weights=False))
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}  # peft's fp32 adapters
    return model


def _step(model: nn.Module, x0: torch.Tensor, cast: bool, autocast: bool = True, device: str = "cpu"):
    """One training micro-step: outputs, the input's gradient, every adapter's gradient, and the dtype each
    lora_A saw (tests/test_lora_cast_gpu.py runs it on CUDA)."""
    model = copy.deepcopy(model).train()
    seen = []
    for layer in lora_layers(model):
        layer.cast_input_dtype_enabled = cast
        layer.lora_A["default"].register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    x = x0.clone().requires_grad_(True)
    with torch.autocast(device, dtype=BF16, enabled=autocast):
        y = model(x)
    (y.float() ** 2).mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return y.detach(), x.grad, grads, seen


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return _peft_model()


@pytest.fixture(scope="module")
def x0() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(4, 16, 64).to(BF16)


def test_without_the_input_cast_the_math_under_autocast_is_the_same_bits(model, x0):
    y_on, dx_on, g_on, seen_on = _step(model, x0, cast=True)
    y_off, dx_off, g_off, seen_off = _step(model, x0, cast=False)
    # the premise: natively each adapter reads an fp32 copy of its bf16 input; under the control the bf16 input itself
    assert set(seen_on) == {torch.float32} and set(seen_off) == {BF16}
    assert len(seen_on) == len(seen_off) == 8 * 2  # 8 LoRA layers, forward and recompute
    assert y_on.dtype == BF16 and torch.equal(y_on, y_off)
    assert torch.equal(dx_on, dx_off)
    assert g_on.keys() == g_off.keys() and len(g_on) == 16
    for name in g_on:
        assert g_on[name].dtype == torch.float32 and torch.equal(g_on[name], g_off[name]), name
    assert any(g.abs().sum() > 0 for g in g_on.values())


def test_the_cast_costs_six_activation_copies_per_lora_layer_and_step(model, x0):
    """peft's bf16 -> fp32 copy and autocast's copy back, in the forward, the recompute and the backward: 8 layers
    x 3 x 2 = 48 ``aten::_to_copy`` fewer without it. The GPU test counts the same as kernels."""
    from torch.profiler import ProfilerActivity, profile

    def copies(cast: bool) -> int:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            _step(model, x0, cast)
        return sum(e.count for e in prof.key_averages() if e.key == "aten::_to_copy")
    assert copies(True) - copies(False) == 8 * 3 * 2


def test_without_autocast_the_cast_is_what_makes_the_dtypes_meet(model, x0):
    """Why the control needs autocast (and the probe refuses it elsewhere): bf16 input, fp32 adapters."""
    with pytest.raises(RuntimeError, match="dtype"):
        _step(model, x0, cast=False, autocast=False)


def _train_step(model: nn.Module, x0: torch.Tensor, autocast: bool = True) -> None:
    model.train()
    with torch.autocast("cpu", dtype=BF16, enabled=autocast):
        y = model(x0.clone().requires_grad_(True))
    (y.float() ** 2).mean().backward()


def test_the_probe_counts_the_casts_natively_and_the_control_switches_them_off_until_train_end(x0):
    m = _peft_model()
    native = LoraCastProbe(None, "peft")
    native.on_train_begin(None, None, None, model=m)
    _train_step(m, x0)
    with torch.no_grad():
        m.eval()(x0)  # an evaluation forward: not a training micro-step, not counted
    rec = native.finish()
    assert (rec.requested, rec.layers, rec.switched, rec.watched, rec.micro_steps) == ("native", 8, 0, True, 1)
    assert rec.calls == rec.casts == 16 and rec.skipped == 0
    assert (rec.cast_from, rec.cast_to, rec.autocast) == ("bfloat16", "float32", "bfloat16")
    assert rec.summary.startswith("16 casts bfloat16 -> float32, under bfloat16 autocast")
    assert not any("_cast_input_dtype" in layer.__dict__ for layer in lora_layers(m))  # the wrappers are gone

    control = LoraCastProbe("off", "peft")
    control.on_train_begin(None, None, None, model=m)
    assert all(layer.cast_input_dtype_enabled is False for layer in lora_layers(m))
    _train_step(m, x0)
    control.on_train_end(None, None, None)
    assert all(layer.cast_input_dtype_enabled is True for layer in lora_layers(m))  # evaluations run peft's own
    rec = control.finish()
    assert (rec.requested, rec.layers, rec.switched) == ("off", 8, 8)
    assert rec.calls == rec.skipped == 16 and rec.casts == 0
    assert rec.summary.startswith("0 casts, 16 skipped (bfloat16 -> float32, under bfloat16 autocast)")


def test_the_control_outside_autocast_or_without_lora_layers_is_refused_with_the_reason(x0):
    m = _peft_model()
    probe = LoraCastProbe("off", "peft")
    probe.on_train_begin(None, None, None, model=m)
    with pytest.raises(FrameworkUnavailable, match="outside autocast, where peft's cast is needed"):
        _train_step(m, x0, autocast=False)
    probe.stop()
    assert all(layer.cast_input_dtype_enabled is True for layer in lora_layers(m))
    with pytest.raises(FrameworkUnavailable, match="the model has no peft LoRA layer"):
        LoraCastProbe("off", "peft").on_train_begin(None, None, None, model=Stack())


def test_a_second_train_begin_still_leaves_peft_s_cast_on_at_train_end(x0):
    """A process that trains twice: the control's second train begin must not save its own switched state."""
    m = _peft_model()
    probe = LoraCastProbe("off", "peft")
    for _ in range(2):
        probe.on_train_begin(None, None, None, model=m)
        assert all(layer.cast_input_dtype_enabled is False for layer in lora_layers(m))
        _train_step(m, x0)
    probe.on_train_end(None, None, None)
    assert all(layer.cast_input_dtype_enabled is True and "_cast_input_dtype" not in layer.__dict__
               for layer in lora_layers(m))
    rec = probe.finish()
    assert rec.switched == 8 and rec.skipped == 2 * 16 and rec.casts == 0  # one wrapper a layer: counted once


def test_a_native_run_whose_peft_has_no_input_cast_is_not_watched_and_not_failed(monkeypatch):
    from peft.tuners.tuners_utils import BaseTunerLayer

    m = _peft_model()
    monkeypatch.setattr(BaseTunerLayer, "_cast_input_dtype", None)  # as a peft from before the method
    probe = LoraCastProbe(None, "peft")
    probe.on_train_begin(None, None, None, model=m)
    rec = probe.finish()
    assert (rec.layers, rec.watched, rec.calls) == (8, False, 0)
    assert any("have no _cast_input_dtype" in n for n in rec.notes)
    with pytest.raises(FrameworkUnavailable, match="profile.lora_input_cast=off: 8 LoRA layers"):
        LoraCastProbe("off", "peft").on_train_begin(None, None, None, model=m)


def test_a_framework_with_its_own_lora_path_is_neither_switched_nor_watched_and_says_so(x0):
    m = _peft_model()
    probe = LoraCastProbe("off", "own")
    probe.on_train_begin(None, None, None, model=m)
    assert all(layer.cast_input_dtype_enabled is True and "_cast_input_dtype" not in layer.__dict__
               for layer in lora_layers(m))
    _train_step(m, x0)
    rec = probe.finish()
    assert (rec.layers, rec.switched, rec.watched, rec.calls) == (8, 0, False, 0)
    assert any(n.startswith("nothing switched") for n in rec.notes)
    assert rec.summary == "8 peft LoRA layers, not watched (the framework's own LoRA path)"


def test_the_control_is_its_own_profiled_job_and_leaves_every_other_job_and_argument_as_it_was():
    from harness.config.job import job_hash, point_hash, unprofiled_point_hash

    golden = json.loads(GOLDEN.read_text())
    for fw in FRAMEWORKS:
        for name in JOBS:
            assert "profile" not in job_for(name, fw)  # an unprofiled job.json carries no trace of it
            controlled = job_for(name, fw, profile="time", **{"profile.lora_input_cast": "off"})
            assert native(fw, controlled) == golden[f"{fw}/{name}"]["native_args"]

    def spec(job):
        return {k: v for k, v in job.items() if k != "runtime"}
    timed = spec(job_for("throughput_7b", "trl", profile="time"))
    assert timed["profile"]["lora_input_cast"] is None
    before = {**timed, "profile": {k: v for k, v in timed["profile"].items() if k != "lora_input_cast"}}
    # a profiled job from before the field hashes as it did (the field at its default is left out)
    assert job_hash(timed) == job_hash(before) and point_hash(timed) == point_hash(before)
    off = spec(job_for("throughput_7b", "trl", profile="time", **{"profile.lora_input_cast": "off"}))
    assert job_hash(off) != job_hash(timed) and point_hash(off) != point_hash(timed)
    assert unprofiled_point_hash(off) == unprofiled_point_hash(timed) == point_hash(spec(job_for("throughput_7b", "trl")))


def test_the_control_is_refused_by_name_where_it_would_mean_nothing(tmp_path):
    for args, message in (
            (["profile.lora_input_cast=off"], "profile.lora_input_cast needs profile=memory|time"),
            (["profile=time", "profile.lora_input_cast=on"], "profile.lora_input_cast must be one of off or null"),
            (["profile=memory", "profile.lora_input_cast=false"], "got 'False'")):
        proc = harness("run", "framework=fake", *args, f"results_dir={tmp_path}")
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not list(tmp_path.rglob("result.json"))
