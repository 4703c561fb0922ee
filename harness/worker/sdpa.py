"""``train.sdpa_backend``: which of PyTorch's scaled_dot_product_attention kernels may run, set and read back.

SDPA picks a kernel per call from the backends enabled in four process-wide flags
(``torch.backends.cuda.enable_{cudnn,flash,mem_efficient,math}_sdp``; on a CPU build the flash and math
flags choose between its CPU flash kernel and math, the other two have no CPU kernel). ``auto`` leaves the
flags as PyTorch and the framework set them. A named backend is the only one left enabled, math included:
a call that backend cannot run then raises ("No available kernel") and the run fails with that reason,
instead of quietly running another kernel, which would defeat the control.

Why it exists (docs/explain.md): on the H200, SDPA picks cuDNN attention for the padded 7B batches, and
cuDNN builds an execution graph for every new sequence length on the host (45-78 ms a call while the GPU
waits); padded batches change length nearly every step, so that build lands in timed steps.

:func:`apply` runs in every worker process (every torchrun rank) after the framework's import and before
it builds its model, trainer or compiled graphs (unsloth compiles lazily, at the first call).
:func:`snapshot` is taken at train begin (harness/worker/live_objects.py) and :func:`read_sdpa` adds the
audit's fields after training: the enabled backends, and the backend SDPA picks for two representative
calls of the job's shape and dtype, asked of PyTorch's own dispatcher (``torch._fused_sdp_choice``, the
function ``scaled_dot_product_attention`` itself consults; present from torch 2.0, with ``enable_gqa``
since 2.5).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

# backend name -> (setter, getter) in torch.backends.cuda, in the order the audit lists them
FLAGS: dict[str, tuple[str, str]] = {
    "cudnn": ("enable_cudnn_sdp", "cudnn_sdp_enabled"),
    "flash": ("enable_flash_sdp", "flash_sdp_enabled"),
    "efficient": ("enable_mem_efficient_sdp", "mem_efficient_sdp_enabled"),
    "math": ("enable_math_sdp", "math_sdp_enabled"),
}
# torch.nn.attention.SDPBackend member -> our name (ERROR: no kernel can run the call)
BACKEND_NAMES = {"CUDNN_ATTENTION": "cudnn", "FLASH_ATTENTION": "flash", "EFFICIENT_ATTENTION": "efficient",
                 "MATH": "math", "OVERRIDEABLE": "overrideable", "ERROR": "none"}


# Backends that take no grouped keys and values: PyTorch's memory-efficient kernel refuses a call with enable_gqa
# (sdp_utils.cpp; flash, math and recent cuDNN take it). transformers' sdpa attention passes enable_gqa, without
# repeating keys and values to every query head, whenever a call has no mask (``use_gqa_in_sdpa``, transformers
# integrations/sdpa_attention.py, 5.x): the evaluations' batch-1 calls, or a training batch whose rows all fill it.
# Under one of these backends alone such a call finds no kernel ("Invalid backend", session 8's first GPU test), so
# apply() makes every call repeat keys and values, as a padded call already does: the same attention, one layout.
NO_GQA = frozenset({"efficient"})
# the audit's sdpa_kv: how keys and values reach an unmasked call
KV_GROUPED, KV_REPEATED = "grouped (enable_gqa) when unmasked", "repeated to every head (repeat_kv)"


class SdpaSettingError(RuntimeError):
    """The flags did not take the value asked for (the run fails with this reason)."""


def setting(job: dict[str, Any]) -> str:
    """The job's ``train.sdpa_backend`` (``auto`` in jobs from before the field existed)."""
    return str((job.get("train") or {}).get("sdpa_backend") or "auto")


def enabled() -> list[str]:
    """The backends whose flag is on now, in FLAGS order."""
    import torch

    return [name for name, (_, getter) in FLAGS.items() if getattr(torch.backends.cuda, getter)()]


def set_enabled(names: list[str]) -> None:
    import torch

    for name, (setter, _) in FLAGS.items():
        getattr(torch.backends.cuda, setter)(name in names)


def apply(job: dict[str, Any]) -> list[str] | None:
    """Enable only the job's backend (``auto``: touch nothing, return None); the flags read back after."""
    backend = setting(job)
    if backend == "auto":
        return None
    if backend not in FLAGS:  # the parent refuses it first (harness/config/validation.py)
        raise SdpaSettingError(f"train.sdpa_backend: unknown backend {backend!r}")
    set_enabled([backend])
    now = enabled()
    if now != [backend]:
        raise SdpaSettingError(f"train.sdpa_backend={backend}: the flags read back {now}")
    repeated = backend in NO_GQA and repeat_keys_and_values()
    print(f"sdpa: only {backend} attention enabled (train.sdpa_backend={backend})"
          + ("; keys and values repeated in unmasked calls too" if repeated else ""), flush=True)
    return now


def _never_grouped(*args: Any, **kwargs: Any) -> bool:
    return False


def repeat_keys_and_values() -> bool:
    """transformers' sdpa attention repeats keys and values to every query head in every call (its
    ``use_gqa_in_sdpa`` answers no), True where it did; False where transformers has no such shortcut (older
    releases always repeat) or no sdpa integration."""
    try:
        from transformers.integrations import sdpa_attention
    except ImportError:
        return False
    if not callable(getattr(sdpa_attention, "use_gqa_in_sdpa", None)):
        return False
    sdpa_attention.use_gqa_in_sdpa = _never_grouped  # looked up as a module global at every call
    return True


def kv_layout() -> str:
    """How transformers' sdpa attention hands keys and values to an unmasked call now (the audit's sdpa_kv). A
    framework with an attention of its own (unsloth's dispatch) picks its layout per call, asking the dispatcher."""
    try:
        from transformers.integrations import sdpa_attention
    except ImportError:
        return KV_REPEATED
    return KV_REPEATED if getattr(sdpa_attention, "use_gqa_in_sdpa", _never_grouped) is _never_grouped else KV_GROUPED


def snapshot() -> dict[str, Any]:
    """The enabled backends as training starts (LiveObjects.on_train_begin)."""
    return {"sdpa_enabled": enabled(), "sdpa_kv": kv_layout()}


@contextlib.contextmanager
def flags_as(names: list[str]) -> Iterator[None]:
    """The flags set to ``names`` for a while, then back to what they were."""
    before = enabled()
    set_enabled(names)
    try:
        yield
    finally:
        set_enabled(before)


def backend_name(choice: int) -> str:
    from torch.nn.attention import SDPBackend

    try:
        return BACKEND_NAMES.get(SDPBackend(choice).name, SDPBackend(choice).name.lower())
    except ValueError:
        return f"unknown({choice})"


def probe_shape(model: Any, audit: dict[str, Any], job: dict[str, Any], args: Any = None) -> dict[str, Any]:
    """The shape and dtype of the job's attention calls, from the live objects: the model's heads and head
    size; the per-device batch and the widest first batch the audit read (``per_device_batch``,
    ``padded_lengths``; the job's batch_size and max_length where those are unknown); the dtype the
    activations take (bf16/fp16 when the Trainer runs in them, else the embedding weights'), on the model's
    device."""
    import torch

    config = getattr(model, "config", None)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = int(text.num_attention_heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    weight = model.get_input_embeddings().weight
    dtype = weight.dtype
    if getattr(args, "bf16", False):
        dtype = torch.bfloat16
    elif getattr(args, "fp16", False):
        dtype = torch.float16
    train = job.get("train") or {}
    widths = [w for w in audit.get("padded_lengths") or [] if isinstance(w, int)]
    batch = audit.get("per_device_batch") if isinstance(audit.get("per_device_batch"), int) else train.get("batch_size")
    length = max(widths) if widths else (audit.get("max_length") or train.get("max_length"))
    return {"device": str(weight.device), "dtype": str(dtype).replace("torch.", ""), "batch": int(batch or 1),
            "length": int(length or 1), "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim}


def choices(shape: dict[str, Any], grouped: bool = True) -> dict[str, str]:
    """The backend SDPA picks for the two calls transformers' sdpa attention makes in training (grad on), laid
    out as it lays them out: ``padded``, a batch padded to its longest row (a boolean [B, 1, L, L] mask, keys
    and values repeated to every query head by ``repeat_kv``, a contiguous copy, is_causal off), and
    ``causal``, a batch without padding (no mask, is_causal, grouped keys and values with enable_gqa). Queries
    (and unrepeated keys and values) are the projections' [B, L, heads, D] viewed as [B, heads, L, D]. "none":
    no enabled backend can run the call (it would raise). ``grouped=False``: the causal call as it runs when
    transformers repeats keys and values in every call (:func:`repeat_keys_and_values`)."""
    import torch

    device, dtype = torch.device(shape["device"]), getattr(torch, shape["dtype"])
    b, n, g, length, d = shape["batch"], shape["heads"], shape["kv_heads"], shape["length"], shape["head_dim"]

    def projected(heads: int) -> Any:
        return torch.empty(b, length, heads, d, device=device, dtype=dtype).transpose(1, 2).requires_grad_()

    out: dict[str, str] = {}
    with torch.enable_grad():
        q = projected(n)
        for name in ("padded", "causal"):
            if name == "causal" and grouped:
                k, v, mask = projected(g), projected(g), None
            else:  # repeat_kv's output: a contiguous [B, heads, L, D] copy
                k, v = (torch.empty(b, n, length, d, device=device, dtype=dtype, requires_grad=True) for _ in "kv")
                # materialised, as transformers' sdpa_mask builds it (causal AND padding: a new tensor)
                mask = torch.ones(length, length, device=device, dtype=torch.bool).tril() \
                    .expand(b, 1, length, length).contiguous() if name == "padded" else None
            try:
                choice = torch._fused_sdp_choice(q, k, v, mask, 0.0, name == "causal",
                                                 enable_gqa=name == "causal" and grouped and g != n)
                out[name] = backend_name(int(choice))
            except torch.cuda.OutOfMemoryError:
                raise  # not an answer about the backends: the caller probes a smaller batch
            except RuntimeError:  # "No viable backend for scaled_dot_product_attention was found"
                out[name] = "none"
            del k, v, mask
    return out


def _choices_within_memory(shape: dict[str, Any], out: dict[str, Any], notes: list[str],
                           grouped: bool = True) -> dict[str, str]:
    """``choices`` at the job's batch; where its tensors (~0.4 GB for the 7B job, more at long lengths) do not fit
    beside what training left allocated, at batch 1: SDPA's backend checks look at lengths, heads, head size,
    dtype and layout, not at the batch, and "none" for an out-of-memory probe would fail the strict audit."""
    import torch

    try:
        return choices(shape, grouped)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        out["sdpa_probe"] = shape = {**shape, "batch": 1}
        notes.append("sdpa_choice probed at batch 1: the job's batch did not fit in GPU memory after training")
        return choices(shape, grouped)


def priority() -> list[str] | None:
    """The order SDPA's CUDA dispatcher tries the enabled backends in (torch >= 2.6; None where torch does not
    say). It is settled at the first CUDA call: on sm90/sm100 with a recent cuDNN, PyTorch then puts cuDNN
    first (``check_prefer_cudnn_attention`` in aten/src/ATen/native/transformers/cuda/sdp_utils.cpp, unless
    TORCH_CUDNN_SDPA_DEPRIORITIZED=1), so read it after a call. The CPU dispatcher has its own order."""
    import torch

    order = getattr(torch._C, "_get_sdp_priority_order", None)
    return [backend_name(int(c)) for c in order()] if callable(order) else None


def read_sdpa(live: Any, model: Any, job: dict[str, Any], out: dict[str, Any], notes: list[str]) -> None:
    """(After the audit's batching and batches sections: the calls' shape comes from them.) The audit's SDPA fields: ``sdpa_enabled`` (at train begin), ``sdpa_choice`` (for the representative
    calls, under those flags and keys-and-values layout), ``sdpa_kv`` (that layout, at train begin), ``sdpa_probe``
    (the calls' shape), ``sdpa_priority``; a note where the flags
    changed during training or are not what ``train.sdpa_backend`` asked for."""
    begin = (getattr(live, "train_begin_sdpa", None) or {}).get("sdpa_enabled")
    now = enabled()
    if begin is None:
        begin = now
        notes.append("sdpa_enabled read after training: the flags were not read at train begin")
    elif begin != now:
        out["sdpa_enabled_at_end"] = now
        notes.append(f"sdpa: the enabled backends changed during training: {begin} at train begin, {now} at the end")
    out["sdpa_enabled"] = begin
    kv = (getattr(live, "train_begin_sdpa", None) or {}).get("sdpa_kv") or kv_layout()
    out["sdpa_kv"] = kv
    backend = setting(job)
    if backend != "auto" and begin != [backend]:
        notes.append(f"sdpa: train.sdpa_backend={backend} was applied, yet {begin} were enabled at train begin "
                     "(something in the framework changed the flags)")
    if model is None:
        out["sdpa_choice"] = None
        notes.append("sdpa_choice unknown: no live model to take the attention's shape from")
        return
    shape = probe_shape(model, out, job, getattr(live, "args", None))
    out["sdpa_probe"] = shape
    with flags_as(begin):
        out["sdpa_choice"] = _choices_within_memory(shape, out, notes, grouped=kv == KV_GROUPED)
    out["sdpa_priority"] = priority() if shape["device"].startswith("cuda") else None
