"""Read the fairness fields back FROM THE LIVE OBJECTS a framework built, never from our own config.

``read_live_fields(live, meter, job, adapter)`` runs in the worker right after training. ``live`` is a
``harness.worker.live_objects.LiveObjects`` callback holding the framework's own model, tokenizer, optimizer,
scheduler, dataloader, TrainingArguments and TrainerState; ``meter`` is the ``StepMeter`` whose
forward pre-hook kept the first micro-batches as they entered the model (``meter.first_batches``,
built with :func:`batch_record`). ``job`` is used only to label (framework name) and to find the
prepared data files; ``adapter`` supplies what is known of the framework by source reading (its
truncation strategy, whether a checkpoint function is its own). A value that cannot be found on the
live objects is ``None`` with a line in ``notes`` saying why, never an exception. Everything returned
is JSON-serialisable.

Where each field comes from (``live.`` omitted):

- trainable_params / total_params: ``model.named_parameters()`` (bitsandbytes 4-bit weights counted
  unpacked, as peft does).
- lora_*: the LoRA layers actually in the model (modules with ``lora_A``/``lora_B``): wrapped
  module suffixes, count, and their ``r``, ``lora_alpha``, ``scaling``, dropout ``p``, ``use_dora``;
  ``use_rslora``/``bias`` from the ``peft_config`` attached to the model.
- quantization / base_dtype / trainable_dtype: the parameters' classes and dtypes, bitsandbytes
  detected by class name (``Linear4bit``, ``Params4bit``...) so bitsandbytes need not be importable.
- attn_implementation: ``model.config._attn_implementation``.
- optimizer_*: ``optimizer`` (unwrapped from accelerate's ``AcceleratedOptimizer``), ``param_groups``.
- lr_scheduler / warmup_steps / total_steps: ``lr_scheduler`` (unwrapped), its ``lr_lambdas``,
  ``args.lr_scheduler_type``, ``args.get_warmup_steps``, ``state.max_steps``.
- batch sizes, seed, max length, packing, padding-free, precision: ``args``.
- gradient checkpointing: the base model's modules (``gradient_checkpointing`` flags) and the
  checkpoint function installed on them (``_gradient_checkpointing_func``), not ``args``: LLaMA-Factory
  enables it on the model itself.
- loss_mask_share, first_batch_hash, first_batches_multiset_hash: ``meter.first_batches``.
- eval_set_hash / train_set_hash / records_truncated: the prepared files in ``job.runtime.data_dir``
  tokenised with the live tokenizer.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, Callable

SCHEMA = 1
FIRST_BATCHES = 8
IGNORE_INDEX = -100

_OPTIMIZER_WRAPPERS = ("AcceleratedOptimizer", "LayerWiseDummyOptimizer", "DeepSpeedOptimizerWrapper")
_SCHEDULER_WRAPPERS = ("AcceleratedScheduler", "DeepSpeedSchedulerWrapper")


# ---- small helpers -------------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    """Make ``value`` JSON-serialisable (dtypes, enums, tuples, tensors, sets...)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(v) for v in value)
    enum_value = getattr(value, "value", None)
    if enum_value is not None and type(value).__module__ != "builtins" and isinstance(enum_value, (str, int)):
        return enum_value
    if type(value).__name__ == "dtype":
        return str(value).replace("torch.", "")
    if hasattr(value, "tolist") and callable(value.tolist):
        try:
            return _jsonable(value.tolist())
        except Exception:  # noqa: BLE001
            pass
    return str(value)


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    """``obj.a.b.c`` or ``default`` if any link is missing (never raises)."""
    for name in names:
        try:
            obj = getattr(obj, name)
        except Exception:  # noqa: BLE001
            return default
        if obj is None:
            return default
    return obj


def _sha256(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, separators=(",", ":")).encode()).hexdigest()


def _file_sha256(path: Path) -> str | None:
    try:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None


def _dtype_name(dtype: Any) -> str | None:
    return None if dtype is None else str(dtype).replace("torch.", "")


def _unwrap_model(model: Any) -> Any:
    """The model under DDP/FSDP/compile wrappers (keeps a PeftModel: that is what we audit)."""
    for _ in range(8):
        if model is None:
            return None
        inner = getattr(model, "_orig_mod", None)  # torch.compile
        if inner is None and type(model).__name__ in ("DistributedDataParallel", "DataParallel",
                                                      "FullyShardedDataParallel", "DeepSpeedEngine"):
            inner = getattr(model, "module", None)
        if inner is None:
            return model
        model = inner
    return model


def _base_model(model: Any) -> Any:
    """The transformers PreTrainedModel under a peft wrapper (``PeftModel.base_model.model``)."""
    get_base = getattr(model, "get_base_model", None)
    if callable(get_base):
        try:
            return get_base()
        except Exception:  # noqa: BLE001
            pass
    return model


def _unwrap(obj: Any, wrappers: tuple[str, ...], attr: str) -> Any:
    for _ in range(4):
        if obj is not None and type(obj).__name__ in wrappers and getattr(obj, attr, None) is not None:
            obj = getattr(obj, attr)
        else:
            break
    return obj


def _approx_numel(param: Any) -> int:
    """Parameter count, with bitsandbytes 4-bit weights (two values per stored byte) unpacked."""
    n = int(param.numel())
    if type(param).__name__ == "Params4bit":
        itemsize = getattr(param, "element_size", lambda: 1)()
        n = n * 2 * int(itemsize)
    return n


# ---- the meter's batch records -------------------------------------------------------------------------
def batch_record(kwargs: dict[str, Any], args: tuple = (), pad_token_id: int | None = None) -> dict[str, Any] | None:
    """What the audit needs from one micro-batch, built from the model call's kwargs (forward pre-hook).

    Returns ``{input_ids, tokens, labels_supervised, rows, seq_len, sequences, has_position_ids}`` where
    ``input_ids`` is one token list per *sequence* with padding removed: padded rows are cut by the
    attention mask (or the pad id), padding-free / packed rows are split where ``position_ids`` restart
    at 0 (or where a segment-id attention mask changes), so a padded batch and a padding-free batch of
    the same records give the same lists. ``labels_supervised`` counts ``labels[..., 1:] != -100``
    (the shifted labels the loss uses, as the StepMeter counts). Costs one device-to-host copy of the
    batch, so the meter should call it for the first few micro-batches only.
    """
    import torch

    input_ids = kwargs.get("input_ids")
    if input_ids is None and args and torch.is_tensor(args[0]):
        input_ids = args[0]
    if not torch.is_tensor(input_ids) or input_ids.dim() not in (1, 2):
        return None
    ids = input_ids.detach().to("cpu")
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    rows, seq_len = int(ids.shape[0]), int(ids.shape[1])
    mask = kwargs.get("attention_mask")
    mask = mask.detach().to("cpu") if torch.is_tensor(mask) and mask.dim() == 2 else None
    pos = kwargs.get("position_ids")
    pos = pos.detach().to("cpu") if torch.is_tensor(pos) and pos.dim() == 2 and pos.shape == ids.shape else None
    sequences: list[list[int]] = []
    tokens = 0
    for b in range(rows):
        row = ids[b].tolist()
        if mask is not None:
            keep = mask[b].tolist()
        elif pos is None and pad_token_id is not None:
            keep = [int(t != pad_token_id) for t in row]
        else:
            keep = [1] * seq_len
        cuts: list[list[int]] = []
        current: list[int] = []
        prev_seg = None
        prow = pos[b].tolist() if pos is not None else None
        for i, tok in enumerate(row):
            seg = keep[i]
            if not seg:
                continue
            starts = (prow is not None and prow[i] == 0 and current) or (prev_seg is not None and seg != prev_seg
                                                                         and current)
            if starts:
                cuts.append(current)
                current = []
            current.append(int(tok))
            prev_seg = seg
        if current:
            cuts.append(current)
        tokens += sum(len(c) for c in cuts)
        sequences.extend(cuts)
    labels = kwargs.get("shift_labels")
    supervised = None
    if torch.is_tensor(labels):
        supervised = int((labels != IGNORE_INDEX).sum().item())
    elif torch.is_tensor(kwargs.get("labels")):
        supervised = int((kwargs["labels"][..., 1:] != IGNORE_INDEX).sum().item())
    return {"input_ids": sequences, "tokens": tokens, "labels_supervised": supervised, "rows": rows,
            "seq_len": seq_len, "sequences": len(sequences), "has_position_ids": pos is not None}


# ---- sections ------------------------------------------------------------------------------------------
def _params(model: Any, out: dict[str, Any]) -> None:
    trainable = total = 0
    frozen_float: Counter = Counter()
    trainable_dtypes: Counter = Counter()
    for _, p in model.named_parameters():
        n = _approx_numel(p)
        total += n
        if p.requires_grad:
            trainable += n
            trainable_dtypes[_dtype_name(p.dtype)] += n
        elif p.is_floating_point():
            frozen_float[_dtype_name(p.dtype)] += n
    out["trainable_params"] = trainable
    out["total_params"] = total
    out["base_dtype"] = frozen_float.most_common(1)[0][0] if frozen_float else None
    out["base_dtypes"] = dict(frozen_float)
    out["trainable_dtype"] = (trainable_dtypes.most_common(1)[0][0] if len(trainable_dtypes) == 1
                              else ",".join(sorted(trainable_dtypes)) or None)


def _lora(model: Any, out: dict[str, Any], notes: list[str]) -> None:
    adapter = getattr(model, "active_adapter", None)
    if isinstance(adapter, (list, tuple)):
        adapter = adapter[0] if adapter else None
    peft_configs = getattr(model, "peft_config", None) or {}
    if adapter is None and isinstance(peft_configs, dict) and peft_configs:
        adapter = next(iter(peft_configs))
    cfg = peft_configs.get(adapter) if isinstance(peft_configs, dict) else None
    suffixes: set[str] = set()
    count = 0
    rs, alphas, scalings, dropouts, doras = set(), set(), set(), set(), set()
    b_sq = a_sq = 0.0
    b_nonzero = False
    for name, module in model.named_modules():
        lora_a, lora_b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
        if lora_a is None or lora_b is None or not hasattr(lora_a, "keys"):
            continue
        key = adapter if adapter in lora_a else next(iter(lora_a.keys()), None)
        if key is None:
            continue
        count += 1
        suffixes.add(name.rsplit(".", 1)[-1])
        for attr, bucket in (("r", rs), ("lora_alpha", alphas), ("scaling", scalings), ("use_dora", doras)):
            value = getattr(module, attr, None)
            if isinstance(value, dict) and key in value:
                bucket.add(float(value[key]) if attr == "scaling" else value[key])
        drop = getattr(module, "lora_dropout", None)
        if drop is not None and hasattr(drop, "keys") and key in drop:
            dropouts.add(float(getattr(drop[key], "p", 0.0)))  # nn.Identity when dropout is 0
        for sub, is_b in ((lora_a[key], False), (lora_b[key], True)):
            w = getattr(sub, "weight", None)
            if w is None:
                continue
            sq = float(w.detach().float().pow(2).sum().item())
            if is_b:
                b_sq += sq
                b_nonzero = b_nonzero or bool(w.detach().ne(0).any().item())
            else:
                a_sq += sq

    def one(values: set) -> Any:
        if not values:
            return None
        return next(iter(values)) if len(values) == 1 else sorted(values)

    out["lora_adapter"] = adapter
    out["lora_modules"] = sorted(suffixes)
    out["lora_module_count"] = count
    out["lora_r"] = one(rs) if rs else _get(cfg, "r")
    out["lora_alpha"] = one(alphas) if alphas else _get(cfg, "lora_alpha")
    out["lora_scaling"] = one(scalings)
    out["lora_dropout"] = one(dropouts) if dropouts else _get(cfg, "lora_dropout")
    out["use_dora"] = one(doras) if doras else _get(cfg, "use_dora")
    out["use_rslora"] = _get(cfg, "use_rslora")
    out["lora_bias"] = _get(cfg, "bias")
    out["lora_config_targets"] = _jsonable(_get(cfg, "target_modules"))
    out["lora_init"] = _jsonable(_get(cfg, "init_lora_weights"))
    out["lora_modules_to_save"] = _jsonable(_get(cfg, "modules_to_save"))
    out["lora_B_nonzero"] = b_nonzero if count else None
    out["lora_B_norm"] = math.sqrt(b_sq) if count else None
    out["lora_A_norm"] = math.sqrt(a_sq) if count else None
    if not count:
        notes.append("no LoRA layer (module with lora_A/lora_B) found in the live model")
    if cfg is None:
        notes.append("no peft_config attached to the live model")


def _quantization(model: Any, out: dict[str, Any]) -> None:
    kinds: Counter = Counter()
    quant_types, compute, double, storage = set(), set(), set(), set()
    for module in model.modules():
        cls = type(module)
        name = cls.__name__
        if name in ("Linear4bit", "Linear8bitLt") and cls.__module__.startswith("bitsandbytes"):
            kinds[name] += 1
            if getattr(module, "compute_dtype", None) is not None:
                compute.add(_dtype_name(module.compute_dtype))
            w = getattr(module, "weight", None)
            state = getattr(w, "quant_state", None)
            if state is not None:
                quant_types.add(getattr(state, "quant_type", None))
                double.add(bool(getattr(state, "nested", False)))
            if type(w).__name__ == "Params4bit" and getattr(w, "quant_type", None):
                quant_types.add(w.quant_type)
            if w is not None:
                storage.add(_dtype_name(getattr(w, "dtype", None)))
    hf_cfg = _get(_base_model(model), "config", "quantization_config")
    if hf_cfg is not None and hasattr(hf_cfg, "to_dict"):
        try:
            hf_cfg = hf_cfg.to_dict()
        except Exception:  # noqa: BLE001
            pass
    out["quantization_config"] = _jsonable(hf_cfg)
    if not kinds:
        out["quantization"] = "none"
        out["quantization_detail"] = None
        return
    quant_types.discard(None)
    detail = {"modules": dict(kinds), "quant_type": sorted(quant_types), "double_quant": sorted(double),
              "compute_dtype": sorted(compute), "storage_dtype": sorted(s for s in storage if s)}
    out["quantization_detail"] = detail
    if "Linear4bit" in kinds:
        out["quantization"] = (f"bnb-4bit:{'/'.join(detail['quant_type']) or '?'}"
                               f":double_quant={'/'.join(str(d) for d in detail['double_quant']) or '?'}"
                               f":compute={'/'.join(detail['compute_dtype']) or '?'}")
    else:
        out["quantization"] = "bnb-8bit"


def _checkpoint_function(base: Any) -> Any:
    for module in base.modules():
        fn = getattr(module, "_gradient_checkpointing_func", None)
        if fn is not None:
            return fn
    return None


def _describe_function(fn: Any) -> tuple[list[str], Any]:
    """Names along a wrapped / partial chain and the ``use_reentrant`` keyword found on it."""
    names: list[str] = []
    reentrant = None
    for _ in range(8):
        if fn is None:
            break
        if isinstance(fn, functools.partial):
            if "use_reentrant" in fn.keywords and reentrant is None:
                reentrant = fn.keywords["use_reentrant"]
            names.append("partial")
            fn = fn.func
            continue
        names.append(f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}")
        fn = getattr(fn, "__wrapped__", None)
    return names, reentrant


def checkpointing_snapshot(model: Any, args: Any) -> dict[str, Any]:
    """The gradient-checkpointing fields as they are now (the live objects call this at train begin)."""
    out: dict[str, Any] = {}
    notes: list[str] = []
    try:
        _gradient_checkpointing(_unwrap_model(model), args, out, notes)
    except Exception as err:  # noqa: BLE001
        notes.append(f"gradient_checkpointing: {type(err).__name__}: {str(err)[:200]}")
    out["gradient_checkpointing_read_at"] = "train_begin"
    return _jsonable(out)


def _gradient_checkpointing(model: Any, args: Any, out: dict[str, Any], notes: list[str]) -> None:
    base = _base_model(model)
    flags = [bool(m.gradient_checkpointing) for m in base.modules()
             if isinstance(getattr(m, "gradient_checkpointing", None), bool)]
    enabled = any(flags) if flags else None
    if enabled is None:
        enabled = _get(base, "is_gradient_checkpointing")
        enabled = bool(enabled) if isinstance(enabled, bool) else None
    out["gradient_checkpointing"] = enabled
    out["gradient_checkpointing_args"] = _get(args, "gradient_checkpointing")
    kwargs = _get(args, "gradient_checkpointing_kwargs")
    out["gradient_checkpointing_kwargs"] = _jsonable(kwargs)
    fn = _checkpoint_function(base) if enabled else None
    names, reentrant = _describe_function(fn)
    if reentrant is None and enabled and isinstance(kwargs, dict):
        reentrant = kwargs.get("use_reentrant")
        if reentrant is not None:
            notes.append("gradient_checkpointing_use_reentrant read from args.gradient_checkpointing_kwargs")
    out["gradient_checkpointing_use_reentrant"] = reentrant if enabled else None
    out["gradient_checkpointing_func"] = names or None
    # "hf" here; read_live_fields asks the framework's adapter whether the function is its own.
    if not enabled:
        out["gradient_checkpointing_kind"] = None
    elif names:
        out["gradient_checkpointing_kind"] = "hf"
    else:
        out["gradient_checkpointing_kind"] = "hf"
        notes.append("gradient checkpointing on but no _gradient_checkpointing_func found: kind assumed hf")


def _optimizer(optimizer: Any, out: dict[str, Any], notes: list[str]) -> None:
    opt = _unwrap(optimizer, _OPTIMIZER_WRAPPERS, "optimizer")
    if opt is None:
        notes.append("no optimizer on the live objects")
        for k in ("optimizer", "optimizer_module", "lr", "betas", "eps", "weight_decay"):
            out[k] = None
        return
    out["optimizer"] = type(opt).__name__
    out["optimizer_module"] = type(opt).__module__
    groups = list(getattr(opt, "param_groups", None) or [])
    defaults = getattr(opt, "defaults", None) or {}
    g0 = groups[0] if groups else {}

    def pick(key: str) -> Any:
        if key in g0:
            return g0[key]
        return defaults.get(key)

    lr = g0.get("initial_lr", defaults.get("lr"))  # LambdaLR writes initial_lr; group "lr" has decayed
    out["lr"] = _jsonable(lr)
    out["lr_final"] = _jsonable(g0.get("lr"))
    out["betas"] = _jsonable(pick("betas"))
    out["eps"] = _jsonable(pick("eps"))
    out["weight_decay"] = _jsonable(pick("weight_decay"))
    out["optimizer_groups"] = [{"params": sum(_approx_numel(p) for p in g.get("params", [])),
                                "weight_decay": _jsonable(g.get("weight_decay")),
                                "lr": _jsonable(g.get("initial_lr", g.get("lr")))} for g in groups]
    out["optimizer_params"] = sum(grp["params"] for grp in out["optimizer_groups"])
    out["optimizer_options"] = {k: _jsonable(pick(k)) for k in ("amsgrad", "foreach", "fused", "maximize",
                                                                 "capturable", "differentiable")
                                if pick(k) is not None}


_SCHEDULER_LAMBDAS = {
    "_get_linear_schedule_with_warmup_lr_lambda": "linear",
    "_get_cosine_schedule_with_warmup_lr_lambda": "cosine",
    "_get_cosine_with_hard_restarts_schedule_with_warmup_lr_lambda": "cosine_with_restarts",
    "_get_polynomial_decay_schedule_with_warmup_lr_lambda": "polynomial",
    "_get_constant_lambda": "constant",
    "_get_constant_schedule_with_warmup_lr_lambda": "constant_with_warmup",
    "_get_inverse_sqrt_schedule_lr_lambda": "inverse_sqrt",
    "_get_wsd_scheduler_lambda": "warmup_stable_decay",
    "_get_cosine_with_min_lr_schedule_with_warmup_lr_lambda": "cosine_with_min_lr",
}


def _scheduler(scheduler: Any, args: Any, state: Any, out: dict[str, Any], notes: list[str]) -> None:
    sched = _unwrap(scheduler, _SCHEDULER_WRAPPERS, "scheduler")
    out["lr_scheduler_class"] = type(sched).__name__ if sched is not None else None
    lam = None
    lambdas = getattr(sched, "lr_lambdas", None)
    if lambdas:
        lam = lambdas[0]
    keywords = dict(lam.keywords) if isinstance(lam, functools.partial) else {}
    lam_name = getattr(lam.func if isinstance(lam, functools.partial) else lam, "__name__", None)
    out["lr_lambda"] = lam_name
    out["lr_lambda_kwargs"] = _jsonable(keywords)
    args_type = _jsonable(_get(args, "lr_scheduler_type"))
    out["lr_scheduler_type_args"] = args_type
    if lam_name in _SCHEDULER_LAMBDAS:
        out["lr_scheduler"] = _SCHEDULER_LAMBDAS[lam_name]
    elif sched is not None and lam_name is None:
        out["lr_scheduler"] = type(sched).__name__
    else:
        out["lr_scheduler"] = args_type
        if sched is None:
            notes.append("no lr_scheduler on the live objects: lr_scheduler read from args.lr_scheduler_type")
    max_steps = _get(state, "max_steps")
    out["total_steps"] = int(max_steps) if isinstance(max_steps, int) and max_steps > 0 else None
    out["global_step"] = _get(state, "global_step")
    out["scheduler_training_steps"] = keywords.get("num_training_steps")
    warmup = keywords.get("num_warmup_steps")
    if warmup is None and args is not None:
        try:
            warmup = args.get_warmup_steps(out["total_steps"] or _get(args, "max_steps"))
        except Exception:  # noqa: BLE001
            warmup = _get(args, "warmup_steps")
        if warmup is not None and lam_name not in ("_get_constant_lambda",):
            notes.append("warmup_steps read from args (not found on the scheduler's lr_lambda)")
    out["warmup_steps"] = _jsonable(warmup)
    if args_type is not None and out["lr_scheduler"] not in (None, args_type) and lam_name in _SCHEDULER_LAMBDAS:
        notes.append(f"scheduler built ({out['lr_scheduler']}) differs from args.lr_scheduler_type ({args_type})")


def _batching(live: Any, out: dict[str, Any], notes: list[str]) -> None:
    args = live.args
    per_device = _get(args, "per_device_train_batch_size")
    accum = _get(args, "gradient_accumulation_steps")
    world = _get(args, "world_size")
    out["per_device_batch"] = per_device
    out["grad_accum"] = accum
    out["world_size"] = world
    out["effective_batch"] = (per_device * accum * world
                              if all(isinstance(v, int) for v in (per_device, accum, world)) else None)
    dl = live.train_dataloader
    dl_bs = _get(dl, "total_batch_size") or _get(dl, "batch_size") or _get(dl, "batch_sampler", "batch_size")
    out["dataloader_batch_size"] = dl_bs if isinstance(dl_bs, int) else None
    out["seed"] = _get(args, "seed")
    out["data_seed"] = _get(args, "data_seed")
    out["max_grad_norm"] = _jsonable(_get(args, "max_grad_norm"))
    bf16, fp16 = _get(args, "bf16"), _get(args, "fp16")
    out["mixed_precision"] = "bf16" if bf16 else "fp16" if fp16 else ("no" if args is not None else None)
    out["loss_type"] = _jsonable(_get(args, "loss_type"))
    out["completion_only_loss"] = _get(args, "completion_only_loss")
    out["assistant_only_loss"] = _get(args, "assistant_only_loss")
    out["average_tokens_across_devices"] = _get(args, "average_tokens_across_devices")
    out["args_optim"] = _jsonable(_get(args, "optim"))


def _max_length(live: Any, out: dict[str, Any], notes: list[str]) -> None:
    args = live.args
    value, source = _get(args, "max_length"), "args.max_length"
    if value is None:
        value, source = _get(args, "max_seq_length"), "args.max_seq_length"
    if value is None:
        # LLaMA-Factory keeps cutoff_len in its DataArguments (not on the Trainer); get_train_args copies it
        # into Seq2SeqTrainingArguments.generation_max_length when that is unset (our adapter leaves it unset).
        value, source = _get(args, "generation_max_length"), "args.generation_max_length (a cutoff_len copied there)"
    if value is None:
        value, source = _get(live.model, "max_seq_length"), "model.max_seq_length"
    if value is None:
        source = None
        notes.append("max_length not found on the live objects (args.max_length, args.generation_max_length, "
                     "model.max_seq_length)")
    out["max_length"] = value if isinstance(value, int) else None
    out["max_length_source"] = source


def _batches(meter: Any, live: Any, out: dict[str, Any], notes: list[str]) -> None:
    batches = [b for b in list(getattr(meter, "first_batches", None) or [])[:FIRST_BATCHES] if isinstance(b, dict)]
    out["first_batches_seen"] = len(batches)
    if not batches:
        notes.append("meter.first_batches empty: batch hashes, loss_mask_share and batch-derived packing unknown")
        out.update(first_batch_hash=None, first_batches_multiset_hash=None, first_batch_rows=None,
                   loss_mask_share=None, first_batches_tokens=None, first_batches_supervised=None,
                   batch_padding_free=None, batch_packed=None, padded_lengths=None)
        return
    first_rows = [list(map(int, r)) for r in (batches[0].get("input_ids") or [])]
    out["first_batch_hash"] = _sha256(first_rows) if first_rows else None
    out["first_batch_rows"] = len(first_rows)
    # The padded width of each micro-batch: the shapes the GPU computes on (padding costs time, not loss).
    out["padded_lengths"] = [b.get("seq_len") for b in batches]
    all_rows = sorted([list(map(int, r)) for b in batches for r in (b.get("input_ids") or [])])
    out["first_batches_multiset_hash"] = _sha256(all_rows) if all_rows else None
    tokens = [b.get("tokens") for b in batches]
    supervised = [b.get("labels_supervised") for b in batches]
    if all(isinstance(t, int) for t in tokens) and all(isinstance(s, int) for s in supervised) and sum(tokens):
        out["loss_mask_share"] = sum(supervised) / sum(tokens)
        out["first_batches_tokens"], out["first_batches_supervised"] = sum(tokens), sum(supervised)
    else:
        out["loss_mask_share"] = out["first_batches_tokens"] = out["first_batches_supervised"] = None
        notes.append("first batches lack token / supervised counts: loss_mask_share unknown")
    # Evidence from the batches themselves: several sequences in one row (padding-free or packed).
    rows = [b.get("rows") for b in batches]
    seqs = [b.get("sequences") for b in batches]
    if all(isinstance(v, int) for v in rows + seqs):
        multi = any(s > r for s, r in zip(seqs, rows))
        out["batch_padding_free"] = multi and all(r == 1 for r in rows)
        # Packing that keeps no sequence boundary (LLaMA-Factory packing without neat_packing) looks like
        # long records here: full rows are no evidence (truncated records fill rows too), so it reads False.
        out["batch_packed"] = multi
    else:
        out["batch_padding_free"] = out["batch_packed"] = None


def _collator(live: Any, out: dict[str, Any]) -> None:
    """``pad_to_multiple_of`` of the collator the train dataloader really uses (the Trainer may wrap it)."""
    collator = getattr(live.train_dataloader, "collate_fn", None)
    while collator is not None and not hasattr(collator, "pad_to_multiple_of") and hasattr(collator, "data_collator"):
        collator = collator.data_collator
    out["collator"] = type(collator).__name__ if collator is not None else None
    out["pad_to_multiple_of"] = getattr(collator, "pad_to_multiple_of", None)


def _packing(live: Any, out: dict[str, Any], notes: list[str]) -> None:
    args = live.args
    packing = _get(args, "packing")
    strategy = _get(args, "packing_strategy")
    out["packing_strategy"] = strategy if packing else None
    if isinstance(packing, bool):
        out["packing"] = packing
        out["packing_source"] = "args.packing"
    else:
        out["packing"] = out.get("batch_packed")
        out["packing_source"] = "first batches" if out["packing"] is not None else None
        if out["packing"] is not None:
            notes.append("packing read from the first batches (rows holding several sequences); packing "
                         "without sequence boundaries (no position_ids restarts) cannot be seen there")
    padding_free = _get(args, "padding_free")
    if isinstance(padding_free, bool):
        # trl's SFTTrainer: padding_free or (packing with a bfd strategy), whatever the flag says.
        effective = padding_free or bool(packing and strategy in ("bfd", "bfd_split", "bfd-requeue"))
        out["padding_free"] = effective
        out["padding_free_source"] = "args.padding_free / packing_strategy"
    else:
        out["padding_free"] = out.get("batch_padding_free")
        out["padding_free_source"] = "first batches" if out["padding_free"] is not None else None
    for key in ("packing", "padding_free"):
        seen = out.get(f"batch_{key}")
        if seen is not None and out[key] is not None and seen != out[key] and out[f"{key}_source"] != "first batches":
            notes.append(f"{key}: args say {out[key]} but the first batches look {seen}")
    out["truncation_mode"] = _jsonable(_get(args, "truncation_mode"))


def _data_files(job: dict[str, Any], live: Any, out: dict[str, Any], notes: list[str], truncation: str | None) -> None:
    data_dir = Path(str(((job or {}).get("runtime") or {}).get("data_dir") or ""))
    out["eval_set_hash"] = _file_sha256(data_dir / "eval.jsonl") if str(data_dir) else None
    out["train_set_hash"] = _file_sha256(data_dir / "train.jsonl") if str(data_dir) else None
    if out["eval_set_hash"] is None:
        notes.append(f"eval.jsonl not readable in {data_dir}")
    out["truncation_strategy"] = truncation
    tokenizer, max_length = live.tokenizer, out.get("max_length")
    out["records_truncated"] = out["records_total"] = out["records_max_tokens"] = None
    template = _get(tokenizer, "chat_template")
    out["chat_template_hash"] = hashlib.sha256(template.encode()).hexdigest() if isinstance(template, str) else None
    out["pad_token_id"] = _get(tokenizer, "pad_token_id")
    out["eos_token_id"] = _get(tokenizer, "eos_token_id")
    if tokenizer is None or not isinstance(max_length, int) or out["train_set_hash"] is None:
        notes.append("records_truncated not computed (needs the live tokenizer, max_length and train.jsonl)")
        return
    try:
        from harness.worker.evaluator import tokenize_record  # the evaluator's own chat tokenisation
    except Exception:  # noqa: BLE001
        tokenize_record = None
    records = [json.loads(line) for line in (data_dir / "train.jsonl").read_text(encoding="utf-8").splitlines()
               if line.strip()]
    lengths = [_record_length(tokenizer, r, max_length, tokenize_record) for r in records]
    known = [n for n in lengths if n is not None]
    if len(known) != len(lengths):
        notes.append(f"records_truncated: {len(lengths) - len(known)} records could not be tokenised")
    out["records_total"] = len(records)
    out["records_truncated"] = sum(1 for n in known if n > max_length)
    out["records_max_tokens"] = max(known) if known else None
    out["records_tokenised_with"] = ("harness.worker.evaluator.tokenize_record" if tokenize_record
                                     else "tokenizer.apply_chat_template")


def _record_length(tokenizer: Any, record: dict[str, Any], max_length: int, tokenize_record: Callable | None) -> int | None:
    """Untruncated token count of one record rendered with the chat template."""
    try:
        if tokenize_record is not None:
            full = tokenize_record(tokenizer, record, 1 << 30)
            return len(full["input_ids"])
        user = str(record["instruction"]) + ("\n" + str(record["input"]) if record.get("input") else "")
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": str(record["output"])}]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])
    except Exception:  # noqa: BLE001
        return None


# ---- entry point ---------------------------------------------------------------------------------------
def _registered_adapter(job: dict[str, Any]) -> Any:
    """The adapter of the job's framework, or None (no job, or a name the registry does not know)."""
    from harness.frameworks import registry

    try:
        return registry.adapter(str(((job or {}).get("framework") or {}).get("name")))
    except registry.UnknownFramework:
        return None


def read_live_fields(live: Any, meter: Any, job: dict[str, Any], adapter: Any = None) -> dict[str, Any]:
    """The audit record of one run, read from the live objects (see the module docstring). ``adapter``
    (default: the job's framework's) supplies what is known by source reading, not by looking: its
    truncation strategy and whether a checkpoint function is its own (``checkpointing_kind``)."""
    adapter = adapter if adapter is not None else _registered_adapter(job)
    notes: list[str] = []
    out: dict[str, Any] = {"schema": SCHEMA,
                           "framework": ((job or {}).get("framework") or {}).get("name")}
    model = _unwrap_model(getattr(live, "model", None))

    def section(name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as err:  # noqa: BLE001  an unreadable field is None plus a note, never a failure
            notes.append(f"{name}: {type(err).__name__}: {str(err)[:200]}")

    if model is None:
        notes.append("no live model: model fields unknown")
    else:
        section("params", lambda: _params(model, out))
        section("lora", lambda: _lora(model, out, notes))
        section("quantization", lambda: _quantization(model, out))
        section("attn_implementation", lambda: out.__setitem__(
            "attn_implementation", _jsonable(_get(_base_model(model), "config", "_attn_implementation"))))
        begin = getattr(live, "train_begin_checkpointing", None)
        if begin:
            # Read when training started: a framework's own evaluation afterwards (unsloth's
            # for_inference) switches the flags off again, which says nothing about training.
            out.update(begin)
        else:
            section("gradient_checkpointing", lambda: _gradient_checkpointing(model, getattr(live, "args", None), out, notes))
        if out.get("gradient_checkpointing_kind") is not None and adapter is not None:
            out["gradient_checkpointing_kind"] = adapter.checkpointing_kind(out.get("gradient_checkpointing_func") or [])
    section("optimizer", lambda: _optimizer(getattr(live, "optimizer", None), out, notes))
    section("scheduler", lambda: _scheduler(getattr(live, "lr_scheduler", None), getattr(live, "args", None),
                                            getattr(live, "state", None), out, notes))
    section("batching", lambda: _batching(live, out, notes))
    section("max_length", lambda: _max_length(live, out, notes))
    section("batches", lambda: _batches(meter, live, out, notes))
    section("packing", lambda: _packing(live, out, notes))
    section("collator", lambda: _collator(live, out))
    section("data", lambda: _data_files(job, live, out, notes, adapter.truncation if adapter is not None else None))
    out["notes"] = notes
    return _jsonable(out)
