"""What the schema's types cannot express, checked on a composed config before anything runs: ``r > 0``,
known optimizer and schedule names, 4-bit needing CUDA, a registered framework and its adapter, the profile,
launcher, dataset and recipe groups. Each failure is one :class:`ConfigError` line naming the field."""
from __future__ import annotations

import math
from typing import Any

from harness.config.schema import (FAIRNESS_MODES, LAUNCHERS, LR_SCHEDULERS, OPTIMIZERS, PROFILE_CHECKPOINTINGS,
                                   PROFILE_KINDS, PROFILE_LORA_INPUT_CASTS, PROFILE_LOSSES, QUANTIZATIONS,
                                   SDPA_BACKENDS, SDPA_CUDA_ONLY, SEED_RANGE, ConfigError)


def _positive(name: str, value: float | int | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be {bound}, got {value}")


def validate(cfg: Any, *, cuda_available: bool) -> None:
    """Check what the schema's types cannot; raise ConfigError naming the first bad field."""
    validate_framework(cfg.framework)
    t = cfg.train
    for name in ("max_steps", "lr", "batch_size", "grad_accum", "max_length", "eval_batch_size"):
        _positive(f"train.{name}", getattr(t, name))
    for name in ("warmup_steps", "weight_decay", "max_grad_norm", "eval_steps", "measure_warmup_steps"):
        _positive(f"train.{name}", getattr(t, name), allow_zero=True)
    _positive("train.target_eval_loss", t.target_eval_loss)
    if t.settle_factor is not None and t.settle_factor <= 1.0:
        raise ConfigError(f"train.settle_factor must be > 1 (a slow step's time per token over the steady state's), "
                          f"got {t.settle_factor}")
    _positive("train.lora.r", t.lora.r)
    _positive("train.lora.alpha", t.lora.alpha)
    if not 0.0 <= t.lora.dropout < 1.0:
        raise ConfigError(f"train.lora.dropout must be in [0, 1), got {t.lora.dropout}")
    if not t.lora.targets:
        raise ConfigError("train.lora.targets must name at least one module")
    if t.optimizer not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer: unknown optimizer {t.optimizer!r} (accepted: {', '.join(OPTIMIZERS)})")
    if t.lr_scheduler not in LR_SCHEDULERS:
        raise ConfigError(f"train.lr_scheduler: unknown schedule {t.lr_scheduler!r} "
                          f"(accepted: {', '.join(LR_SCHEDULERS)})")
    for name, seed in (("train.seed", t.seed), ("model.init_seed", cfg.model.init_seed)):
        if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
            raise ConfigError(f"{name} must be in [0, 2**32 - 1], got {seed}")
    if t.quantization not in QUANTIZATIONS:
        raise ConfigError(f"train.quantization must be one of {QUANTIZATIONS}, got {t.quantization!r}")
    if t.quantization == "4bit" and not cuda_available:
        raise ConfigError("train.quantization=4bit needs a CUDA GPU (bitsandbytes NF4); none was found")
    if t.precision not in ("auto", "bf16", "fp16", "fp32"):
        raise ConfigError(f"train.precision must be auto|bf16|fp16|fp32, got {t.precision!r}")
    if t.target_eval_loss is not None and t.eval_steps == 0:
        raise ConfigError("train.target_eval_loss needs train.eval_steps > 0")
    validate_sdpa_backend(cfg, cuda_available=cuda_available)
    if cfg.fairness not in FAIRNESS_MODES:
        raise ConfigError(f"fairness must be one of {FAIRNESS_MODES}, got {cfg.fairness!r}")
    if cfg.model.weights not in ("pretrained", "random"):
        raise ConfigError(f"model.weights must be pretrained|random, got {cfg.model.weights!r}")
    _positive("repeats", cfg.repeats)
    _positive("timeout_s", cfg.timeout_s)
    _positive("dataset.num_eval", cfg.dataset.num_eval)
    _positive("dataset.num_train", cfg.dataset.num_train)
    _positive("sample_interval_ms", cfg.sample_interval_ms)
    validate_launcher(cfg)
    validate_profile(cfg)
    validate_dataset(cfg)
    validate_recipe(cfg)


def validate_sdpa_backend(cfg: Any, *, cuda_available: bool) -> None:
    """train.sdpa_backend: a known backend, on a model whose attention goes through SDPA, with the kernel on
    this machine (a CPU has no cuDNN or memory-efficient kernel: every attention call would fail)."""
    backend = cfg.train.get("sdpa_backend", "auto") if hasattr(cfg.train, "get") else cfg.train.sdpa_backend
    if backend not in SDPA_BACKENDS:
        raise ConfigError(f"train.sdpa_backend must be one of {'|'.join(SDPA_BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return
    if cfg.model.attn_implementation != "sdpa":
        raise ConfigError(f"train.sdpa_backend={backend} needs model.attn_implementation=sdpa "
                          f"(got {cfg.model.attn_implementation!r}: its attention never calls SDPA)")
    recipe = cfg.get("recipe") if hasattr(cfg, "get") else getattr(cfg, "recipe", None)
    if recipe is not None and recipe.name != "identical":
        raise ConfigError(f"train.sdpa_backend={backend} needs recipe=identical (recipe={recipe.name} brings each "
                          "framework's own attention)")
    if backend in SDPA_CUDA_ONLY and not cuda_available:
        raise ConfigError(f"train.sdpa_backend={backend} needs a CUDA GPU (SDPA on a CPU has only its flash and "
                          "math kernels); none was found")


def validate_profile(cfg: Any) -> None:
    """profile=none|memory|time, and its knobs only where a profile is on (they would be silently unused)."""
    profile = cfg.get("profile") if hasattr(cfg, "get") else getattr(cfg, "profile", None)
    if profile is None:
        return
    if profile.kind is not None and profile.kind not in PROFILE_KINDS:
        raise ConfigError(f"profile.kind must be one of {'|'.join(PROFILE_KINDS)} or null, got {profile.kind!r}")
    _positive("profile.steps", profile.steps)
    _positive("profile.max_entries", profile.max_entries)
    _positive("profile.trace_max_mb", profile.trace_max_mb)
    if profile.alloc_conf is not None and profile.kind is None:
        raise ConfigError("profile.alloc_conf needs profile=memory|time (an unprofiled run's job never changes)")
    validate_lora_input_cast(profile)
    validate_checkpointing(cfg, profile)
    loss = profile.get("loss") if hasattr(profile, "get") else getattr(profile, "loss", None)
    if loss is None:
        return
    if loss not in PROFILE_LOSSES:
        raise ConfigError(f"profile.loss must be one of {'|'.join(PROFILE_LOSSES)} or null (each framework's own), got {loss!r}")
    if profile.kind is None:
        raise ConfigError("profile.loss needs profile=memory|time (an unprofiled run's job never changes)")
    recipe = cfg.get("recipe") if hasattr(cfg, "get") else getattr(cfg, "recipe", None)
    if recipe is not None and recipe.name != "identical":
        raise ConfigError(f"profile.loss needs recipe=identical (recipe={recipe.name} brings fused losses of its own)")


def _profile_control(profile: Any, key: str, choices: tuple[str, ...], null_means: str) -> str | None:
    """A controlled rerun's ``profile.KEY``: None, or one of ``choices`` on a profiled run (refused otherwise)."""
    value = profile.get(key) if hasattr(profile, "get") else getattr(profile, key, None)
    if value is None:
        return None
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"profile.{key} must be one of {'|'.join(choices)} or null ({null_means}), got {value!r}")
    if profile.kind is None:
        raise ConfigError(f"profile.{key} needs profile=memory|time (an unprofiled run's job never changes)")
    return value


def validate_lora_input_cast(profile: Any) -> None:
    """profile.lora_input_cast: null (each framework's own) or off, and only on a profiled run."""
    _profile_control(profile, "lora_input_cast", PROFILE_LORA_INPUT_CASTS, "each framework's own")


def validate_checkpointing(cfg: Any, profile: Any) -> None:
    """profile.checkpointing: null (the job's non-reentrant checkpointing) or reentrant, on a profiled run of the
    identical recipe that checkpoints at all."""
    if _profile_control(profile, "checkpointing", PROFILE_CHECKPOINTINGS, "the job's own, non-reentrant") is None:
        return
    train = cfg.get("train") if hasattr(cfg, "get") else getattr(cfg, "train", None)
    if train is not None and not train.gradient_checkpointing:
        raise ConfigError("profile.checkpointing needs train.gradient_checkpointing=true (there is nothing to "
                          "checkpoint otherwise)")
    recipe = cfg.get("recipe") if hasattr(cfg, "get") else getattr(cfg, "recipe", None)
    if recipe is not None and recipe.name != "identical":
        raise ConfigError(f"profile.checkpointing needs recipe=identical (recipe={recipe.name} picks its own "
                          "checkpointing)")


def validate_framework(fw: Any) -> None:
    """A registered framework whose config names its registered adapter, and a fault it can inject."""
    from harness.frameworks import registry

    try:
        entry, adapter = registry.entry(fw.name), registry.adapter(fw.name)
    except registry.UnknownFramework as err:
        raise ConfigError(f"framework.name: {err}") from None
    if fw.adapter != entry.adapter_ref:  # the worker loads the registered one: a different one would not run
        raise ConfigError(f"framework.adapter={fw.adapter}: framework {fw.name} is registered with "
                          f"{entry.adapter_ref} ({entry.config_file.name}); add a framework to use another adapter")
    if fw.fault == "none":
        return
    if not adapter.faults:
        injectable = [n for n in registry.names() if registry.adapter(n).faults]
        raise ConfigError(f"framework.fault: framework {fw.name} injects no faults "
                          f"(faults can only be injected into framework={'|'.join(injectable)})")
    if fw.fault not in adapter.faults:
        raise ConfigError(f"framework.fault must be one of {adapter.faults}, got {fw.fault!r}")


def validate_dataset(cfg: Any) -> None:
    from harness.data.formats import DATASET_FORMATS, LOSS_ON  # noqa: PLC0415  (data_formats imports ConfigError)

    dataset = cfg.dataset
    if dataset.format not in DATASET_FORMATS:
        raise ConfigError(f"dataset.format must be one of {'|'.join(DATASET_FORMATS)}, got {dataset.format!r} "
                          "(CSV is not supported: convert it to JSON lines)")
    if dataset.loss_on not in LOSS_ON:
        raise ConfigError(f"dataset.loss_on must be one of {'|'.join(LOSS_ON)}, got {dataset.loss_on!r}")


def validate_recipe(cfg: Any) -> None:
    """recipe=identical|recommended, its packing, settings that contradict it, and the framework's feature
    list (every entry well-formed, named by file and feature)."""
    from harness.frameworks import recipes  # noqa: PLC0415  (light; shared with the worker)

    recipe = cfg.get("recipe") if hasattr(cfg, "get") else getattr(cfg, "recipe", None)
    if recipe is None:
        return
    from omegaconf import OmegaConf  # noqa: PLC0415

    def plain(node: Any) -> Any:
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node

    where = f"conf/framework/{cfg.framework.name}.yaml"
    try:
        recipes.check_recipe(str(recipe.name), str(recipe.packing), train_packing=bool(cfg.train.packing))
        recipes.parse_features(plain(cfg.framework.get("recommended")), where)
        recipes.parse_always_on(plain(cfg.framework.get("always_on")), where)
    except recipes.RecipeError as err:
        raise ConfigError(str(err)) from None


def validate_launcher(cfg: Any) -> None:
    """The launcher group (Scale): a known launcher, nproc >= 1, and nproc > 1 only under torchrun."""
    launcher = cfg.get("launcher") if hasattr(cfg, "get") else getattr(cfg, "launcher", None)
    if launcher is None:
        return
    if launcher.name not in LAUNCHERS:
        raise ConfigError(f"launcher.name must be one of {LAUNCHERS}, got {launcher.name!r}")
    if launcher.nproc < 1:
        raise ConfigError(f"launcher.nproc must be >= 1, got {launcher.nproc}")
    if launcher.name == "local" and launcher.nproc != 1:
        raise ConfigError(f"launcher.nproc={launcher.nproc} needs launcher=torchrun (local starts one process)")
