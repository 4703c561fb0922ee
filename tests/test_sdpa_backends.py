"""The audit's SDPA choice is PyTorch's own dispatch: for each backend pinned alone, the backend
``harness.worker.sdpa.choices`` reports for a call is the op a real ``scaled_dot_product_attention`` call on
the same tensors runs (forward and backward, read from torch.profiler), and "none" is a call that raises.
On CPU (flash and math); on a GPU (``pytest -m gpu``) all four on the Qwen2.5-7B attention's heads (bf16),
then trl and unsloth trained with ``train.sdpa_backend=efficient`` on Qwen2.5-0.5B, unsloth compiling,
every profiled attention call the efficient kernel (before the 7B runs of ``h200_session.sh``, CONTROL=sdpa).
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from harness.worker import sdpa  # noqa: E402
from tests.cli import harness, results  # noqa: E402
from tests.helpers.hub_mirror import mirror_env  # noqa: E402

# the op each backend runs under aten::scaled_dot_product_attention (CPU flash: its own op)
OPS = {"cudnn": "aten::_scaled_dot_product_cudnn_attention", "flash": "aten::_scaled_dot_product_flash_attention",
       "efficient": "aten::_scaled_dot_product_efficient_attention", "math": "aten::_scaled_dot_product_attention_math"}
CPU_FLASH = "aten::_scaled_dot_product_flash_attention_for_cpu"
SDPA_OP_PREFIX = "aten::_scaled_dot_product_"


def _real_call(shape: dict, kind: str) -> set[str] | None:
    """The SDPA backend ops a real call of ``kind`` runs (forward and backward), None if it raises."""
    dev, dtype = torch.device(shape["device"]), getattr(torch, shape["dtype"])
    b, n, g, length, d = shape["batch"], shape["heads"], shape["kv_heads"], shape["length"], shape["head_dim"]

    def projected(heads):
        return torch.randn(b, length, heads, d, device=dev, dtype=dtype).transpose(1, 2).requires_grad_()

    q = projected(n)
    if kind == "padded":
        k, v = (torch.randn(b, n, length, d, device=dev, dtype=dtype, requires_grad=True) for _ in "kv")
        mask = torch.ones(length, length, device=dev, dtype=torch.bool).tril().expand(b, 1, length, length).contiguous()
        kwargs = {"attn_mask": mask}
    else:
        k, v = projected(g), projected(g)
        kwargs = {"is_causal": True, "enable_gqa": g != n}
    with torch.profiler.profile() as prof:
        try:
            torch.nn.functional.scaled_dot_product_attention(q, k, v, **kwargs).sum().backward()
        except RuntimeError:
            return None
    return {e.key for e in prof.key_averages() if e.key.startswith(SDPA_OP_PREFIX)}


def _check_consistent(shape: dict, backends: tuple[str, ...]) -> dict[str, dict[str, str]]:
    seen = {}
    for backend in backends:
        with sdpa.flags_as([backend]):
            chosen = sdpa.choices(shape)
            for kind, name in chosen.items():
                ops = _real_call(shape, kind)
                if name == "none":
                    assert ops is None, (backend, kind, ops)
                    continue
                assert name == backend, (backend, kind, name)  # the one enabled backend, or none
                op = CPU_FLASH if shape["device"] == "cpu" and name == "flash" else OPS[name]
                assert ops is not None and op in ops, (backend, kind, ops)
                assert all(o.startswith(op) for o in ops), (backend, kind, ops)  # no other backend's op
        seen[backend] = chosen
    return seen


def test_the_choice_is_what_a_real_call_runs_on_cpu():
    shape = {"device": "cpu", "dtype": "float32", "batch": 2, "length": 64, "heads": 4, "kv_heads": 2, "head_dim": 16}
    seen = _check_consistent(shape, ("flash", "math"))
    assert seen["math"] == {"padded": "math", "causal": "math"}
    with sdpa.flags_as(["efficient"]):  # no CPU kernel: every call would raise
        assert sdpa.choices(shape) == {"padded": "none", "causal": "none"}
        assert _real_call(shape, "padded") is None


def test_efficient_alone_repeats_keys_and_values_in_unmasked_calls_with_the_same_attention(monkeypatch):
    """Under efficient alone an unmasked grouped call has no kernel (its batch-1 evaluations failed on the H200:
    "Invalid backend"), so apply() has transformers repeat keys and values there too: same outputs, one layout."""
    from transformers.integrations import sdpa_attention

    monkeypatch.setattr(sdpa_attention, "use_gqa_in_sdpa", sdpa_attention.use_gqa_in_sdpa)  # put back after
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 4, 8, 16), torch.randn(1, 2, 8, 16), torch.randn(1, 2, 8, 16)
    module = type("Attention", (torch.nn.Module,), {})()
    module.num_key_value_groups, module.is_causal = 2, True

    def attend():
        return sdpa_attention.sdpa_attention_forward(module, q, k, v, attention_mask=None)[0]

    assert sdpa.kv_layout() == sdpa.KV_GROUPED and sdpa_attention.use_gqa_in_sdpa(None, k, v)
    with sdpa.flags_as(["math"]):
        grouped = attend()
    with sdpa.flags_as(sdpa.enabled()):
        assert sdpa.apply({"train": {"sdpa_backend": "efficient"}}) == ["efficient"]
        assert sdpa.snapshot() == {"sdpa_enabled": ["efficient"], "sdpa_kv": sdpa.KV_REPEATED}
    assert not sdpa_attention.use_gqa_in_sdpa(None, k, v)
    with sdpa.flags_as(["math"]):
        torch.testing.assert_close(attend(), grouped, rtol=0, atol=1e-6)
        # the audit's causal probe then asks for the repeated layout
        shape = {"device": "cpu", "dtype": "float32", "batch": 1, "length": 8, "heads": 4, "kv_heads": 2,
                 "head_dim": 16}
        assert sdpa.choices(shape, grouped=False) == {"padded": "math", "causal": "math"}


def test_other_backends_leave_the_grouped_calls_alone(monkeypatch):
    from transformers.integrations import sdpa_attention

    monkeypatch.setattr(sdpa_attention, "use_gqa_in_sdpa", sdpa_attention.use_gqa_in_sdpa)
    with sdpa.flags_as(sdpa.enabled()):
        sdpa.apply({"train": {"sdpa_backend": "math"}})
        assert sdpa.apply({"train": {"sdpa_backend": "auto"}}) is None
    assert sdpa.kv_layout() == sdpa.KV_GROUPED


@pytest.mark.gpu
def test_the_choice_is_what_a_real_call_runs_on_the_gpu():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    # Qwen2.5-7B's attention (28 query heads, 4 key/value heads, 128 wide) in bf16, shorter than the job's
    shape = {"device": "cuda", "dtype": "bfloat16", "batch": 2, "length": 256, "heads": 28, "kv_heads": 4,
             "head_dim": 128}
    seen = _check_consistent(shape, ("cudnn", "flash", "efficient", "math"))
    assert seen["math"] == {"padded": "math", "causal": "math"}
    assert seen["flash"]["padded"] == "none"  # flash attention takes no mask: a padded batch would fail
    print({b: c for b, c in seen.items()}, "priority", sdpa.priority())  # the GPU's answers, in the log


@pytest.mark.gpu
def test_trl_and_unsloth_train_on_the_efficient_kernel_alone(tmp_path, hub_mirror):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    # the mirror through the fixture: the session's environment has HARNESS_HUB_MIRROR unset (tests/conftest.py)
    run = harness("run", "framework=trl,unsloth", "model=qwen2.5-0.5b", "model.weights=random", "train.max_steps=4",
                  "train.measure_warmup_steps=1", "train.max_length=512", "profile=time", "profile.steps=2",
                  "train.sdpa_backend=efficient", f"results_dir={tmp_path}", "report=false", "-m",
                  env=mirror_env(hub_mirror), timeout=1500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    by = {r["framework"]["name"]: r for r in results(tmp_path)}
    assert set(by) == {"trl", "unsloth"}
    for name, r in by.items():
        assert r["status"] == "ok", (name, r["reason"])
        assert r["audit"]["sdpa_enabled"] == ["efficient"] and r["audit"]["sdpa_kv"] == sdpa.KV_REPEATED
        # the unmasked call too: keys and values repeated, so the evaluations' batch-1 calls have a kernel
        assert r["audit"]["sdpa_choice"] == {"padded": "efficient", "causal": "efficient"}
        ops = {o["name"] for o in r["profile"]["time"]["sdpa_ops"]}
        assert ops and all(o.startswith(OPS["efficient"]) for o in ops), (name, ops)
