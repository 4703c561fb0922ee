"""Config schema: one dataclass per concern, registered with Hydra's ConfigStore.

The YAML files under ``conf/`` fill these schemas; OmegaConf type-checks every value on merge
(``train.lr=abc`` is refused), and :func:`validate` checks what types cannot express (``r > 0``,
files that must exist, 4-bit needing CUDA). Errors are :class:`ConfigError`: one line naming the
field, turned into exit code 2 by the CLI before anything trains.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class ConfigError(ValueError):
    """A bad value in the job description; the message names the field, file or record."""


QUANTIZATIONS = ("none", "4bit")
FAIRNESS_MODES = ("strict", "native")
LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# ``train.optimizer`` / ``train.lr_scheduler`` are HF TrainingArguments ``optim`` / ``lr_scheduler_type``
# values that every framework's transformers (5.6 under LLaMA-Factory, 5.17 under trl and unsloth) knows and
# that need no extra arguments or packages the recipe does not pin (galore needs optim_target_modules, lomo
# and apollo their own packages, cosine_with_min_lr a min_lr, reduce_lr_on_plateau an eval metric). Kept
# here because the parent never imports transformers (it pulls torch in); tests/test_config.py checks the
# lists against transformers' own enums, so they cannot go stale.
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adagrad", "rmsprop",
              "adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit",
              "lion_8bit", "lion_32bit", "paged_lion_8bit", "paged_lion_32bit", "ademamix", "ademamix_8bit")
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt")
# Seeds go to numpy, which takes 0 <= seed < 2**32.
SEED_RANGE = (0, 2**32 - 1)


@dataclass
class FrameworkConfig:
    name: str = MISSING
    version: str = MISSING
    # "env": run under the framework's own virtual environment (envs/NAME-VERSION.txt);
    # "current": run under this interpreter; anything else: path to a python executable.
    python: str = "env"
    # The framework's adapter, "module:Class" (harness/frameworks/registry.py). Like python, it says how
    # the job runs, not what it trains: it is not part of the job (harness/config/job.py).
    adapter: str = MISSING
    # Fault injection, for adapters that declare faults (tests only; Adapter.faults).
    fault: str = "none"
    # recipe=recommended: the framework's own speed and memory features, one mapping per feature
    # (harness/frameworks/recipes.py: FEATURE_KEYS), and what is on in both recipes (context for the audit).
    # Out of identical jobs and their hashes (harness/config/job.py).
    recommended: list[Any] = field(default_factory=list)
    always_on: list[Any] = field(default_factory=list)


@dataclass
class ModelConfig:
    name: str = MISSING
    hub_id: str = MISSING  # a Hub id, or a local folder holding config.json
    # "pretrained": load the weights; "random": build from config.json with init_seed, cache once,
    # and let every framework load the same files.
    weights: str = "pretrained"
    init_seed: int = 0
    trust_remote_code: bool = False
    attn_implementation: str = "sdpa"


@dataclass
class DatasetConfig:
    name: str = MISSING
    # A Hub dataset id: with train_file, files inside its repo; without, loaded with datasets.load_dataset
    # (config, split; eval_split or the end of split for eval). A local file (dataset.path) wins over both.
    hub_id: Optional[str] = None
    config: Optional[str] = None
    split: str = "train"
    eval_split: Optional[str] = None
    # auto|alpaca|sharegpt|messages (auto: detected from the first record); see harness/data/formats.py.
    format: str = "auto"
    # Supervised turns of a conversation: every assistant turn, or only the last one.
    loss_on: str = "all_assistant"
    train_file: Optional[str] = None
    eval_file: Optional[str] = None
    # File names used instead when ids resolve through the offline mirror (HARNESS_HUB_MIRROR).
    mirror_train_file: Optional[str] = None
    mirror_eval_file: Optional[str] = None
    path: Optional[str] = None
    # Held-out records for eval loss: taken from eval_file when given, else split off the end of train.
    num_train: Optional[int] = None
    num_eval: int = 64


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: list(LORA_TARGET_MODULES))


@dataclass
class TrainConfig:
    max_steps: int = 60
    lr: float = 2e-4
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 1024
    lora: LoraConfig = field(default_factory=LoraConfig)
    quantization: str = "none"
    gradient_checkpointing: bool = True
    packing: bool = False
    seed: int = 42
    optimizer: str = "adamw_torch"
    lr_scheduler: str = "linear"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # "auto": bf16 where the GPU supports it, fp32 on CPU.
    precision: str = "auto"
    # Eval loss every N steps (0: only at the end). Needed for target_eval_loss.
    eval_steps: int = 0
    eval_batch_size: int = 8
    target_eval_loss: Optional[float] = None
    # Steps excluded from throughput figures (compilation, allocator and cache warm-up).
    measure_warmup_steps: int = 10
    # Timing starts after the last step of the run's first half slower per token than this factor times
    # the steady state's (harness/worker/step_meter.py); null: exactly measure_warmup_steps are excluded.
    settle_factor: Optional[float] = None


# ---- profile (Explain): where a run's memory and step time go; off by default, out of the job when off ----
PROFILE_KINDS = ("memory", "time")


@dataclass
class ProfileConfig:
    # null (profile=none): no profiling, and the profile group is left out of the job and its hash, so an
    # unprofiled run is the same job as before profiling existed. memory: the CUDA allocator's history,
    # its peak attributed to categories (harness/results/memory_attribution.py). time: ``steps`` steady
    # steps after the warm-up under torch.profiler (harness/results/time_attribution.py).
    kind: Optional[str] = None
    steps: int = 3
    # The allocator history's ring buffer (events; each costs ~1 KB of host memory): the peak's whole step
    # must fit, or the result says the attribution is partial.
    max_entries: int = 200000
    # The trace kept beside the result (gzip): cut to the first profiled step when larger, dropped when
    # even that is (the result says which).
    trace_max_mb: float = 50.0
    # A controlled rerun's one change: PYTORCH_CUDA_ALLOC_CONF for the worker (expandable_segments:True).
    alloc_conf: Optional[str] = None


# ---- launcher (Scale): how the worker is started; nproc is part of the job (it changes the effective batch) ----
LAUNCHERS = ("local", "torchrun")


@dataclass
class LauncherConfig:
    # "local": one worker process; "torchrun": ``python -m torch.distributed.run --standalone
    # --nproc_per_node NPROC -m harness.worker RUN_DIR`` (one rank per GPU, DDP).
    name: str = "local"
    nproc: int = 1


# ---- recipe: identical (the same math everywhere) or recommended (each framework's own features) ----
@dataclass
class RecipeConfig:
    # identical: out of the job and its hash (harness/config/job.py), as before the recipe group existed.
    name: str = "identical"
    # framework | on | off: who packs under recipe=recommended (conf/recipe/recommended.yaml).
    packing: str = "framework"


@dataclass
class Config:
    framework: FrameworkConfig = field(default_factory=FrameworkConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    experiment: Any = None
    suite: str = "default"
    repeats: int = 1
    fairness: str = "strict"
    timeout_s: int = 3600
    force: bool = False
    results_dir: str = "results"
    # A results dir is held by one sweep at a time (RESULTS_DIR/.sweep.lock): a second sweep into it
    # exits 2 naming the holder, or with wait_for_lock=true waits for it and then resumes.
    wait_for_lock: bool = False
    reports_dir: str = "reports"
    report: bool = True
    # Keep each run's framework output (adapters, checkpoints) and data copy; off: results stay small.
    keep_outputs: bool = False
    # Build a missing framework environment on first use (from PyPI, or env_wheelhouse offline).
    env_auto_build: bool = True
    env_wheelhouse: Optional[str] = None
    # NVML sampling period of the parent-side memory sampler.
    sample_interval_ms: int = 10
    # Dense bf16 peak FLOP/s for MFU; None: looked up by GPU name (harness/results/flops.py).
    mfu_peak_flops: Optional[float] = None
    # ---- launcher (Scale) ----
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    # ---- profile (Explain) ----
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    # ---- recipe (issue 17) ----
    recipe: RecipeConfig = field(default_factory=RecipeConfig)


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


def _compared_frameworks() -> str:
    from harness.frameworks import registry

    return ",".join(registry.compared())


def _reference_framework() -> str | None:
    from harness.frameworks import registry

    return registry.reference()


def register_configs() -> None:
    """The schema, and the resolvers conf/config.yaml reads the framework registry with:
    ``${reference_framework:}`` (a run's default framework) and ``${compared_frameworks:}`` (what a plain
    ``-m`` sweeps)."""
    from omegaconf import OmegaConf

    ConfigStore.instance().store(name="harness_schema", node=Config)
    OmegaConf.register_new_resolver("reference_framework", _reference_framework, replace=True)
    OmegaConf.register_new_resolver("compared_frameworks", _compared_frameworks, replace=True)


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


def validate_profile(cfg: Any) -> None:
    """profile=none|memory|time, and its knobs only where a profile is on (they would be silently unused)."""
    profile = cfg.get("profile") if hasattr(cfg, "get") else getattr(cfg, "profile", None)
    if profile is None:
        return
    if profile.kind is not None and profile.kind not in PROFILE_KINDS:
        raise ConfigError(f"profile.kind must be one of {PROFILE_KINDS} or null, got {profile.kind!r}")
    _positive("profile.steps", profile.steps)
    _positive("profile.max_entries", profile.max_entries)
    _positive("profile.trace_max_mb", profile.trace_max_mb)
    if profile.alloc_conf is not None and profile.kind is None:
        raise ConfigError("profile.alloc_conf needs profile=memory|time (an unprofiled run's job never changes)")


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
