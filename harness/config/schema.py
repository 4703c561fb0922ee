"""Config schema: one dataclass per concern, registered with Hydra's ConfigStore.

The YAML files under ``conf/`` fill these schemas; OmegaConf type-checks every value on merge
(``train.lr=abc`` is refused), and :func:`harness.config.validation.validate` checks what types cannot express (``r > 0``,
files that must exist, 4-bit needing CUDA). Errors are :class:`ConfigError`: one line naming the
field, turned into exit code 2 by the CLI before anything trains.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
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
# ``train.sdpa_backend``: which of PyTorch's scaled_dot_product_attention kernels may run (the worker sets
# torch.backends.cuda.enable_{cudnn,flash,mem_efficient,math}_sdp; harness/worker/sdpa.py). auto: PyTorch's own
# choice, flags untouched. A named one is the only one enabled: a call it cannot run fails, never falls back.
SDPA_BACKENDS = ("auto", "cudnn", "flash", "efficient", "math")
# The named backends with CUDA kernels only (CPU SDPA has a flash kernel of its own and math).
SDPA_CUDA_ONLY = ("cudnn", "efficient")


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
    # SDPA_BACKENDS: auto (PyTorch picks; the default, out of the hash) or the one attention kernel allowed.
    sdpa_backend: str = "auto"


# ---- profile (Explain): where a run's memory and step time go; off by default, out of the job when off ----
PROFILE_KINDS = ("memory", "time")
# profile.loss: the one loss implementation the same-loss control puts in every framework (docs/explain.md).
PROFILE_LOSSES = ("transformers",)
# profile.lora_input_cast: off switches peft's cast of each LoRA layer's input to the adapters' dtype off
# (docs/explain.md section 4).
PROFILE_LORA_INPUT_CASTS = ("off",)
# profile.checkpointing: reentrant checkpoints every layer with torch's reentrant checkpoint function, as unsloth's
# own does, in place of the non-reentrant one the identical recipe pins (docs/explain.md section 6).
PROFILE_CHECKPOINTINGS = ("reentrant",)


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
    # A controlled rerun's one change: the loss. null: each framework's own. transformers: the model's
    # forward builds the full logits and transformers' ForCausalLMLoss computes the loss (fp32 upcast), in
    # every framework: what LLaMA-Factory, ms-swift and axolotl run anyway; trl's and unsloth's fused,
    # chunked losses are replaced by it (harness/worker/common_loss.py; docs/explain.md).
    loss: Optional[str] = None
    # A controlled rerun's one change: peft's LoRA input cast. null: each framework's own. off: every peft
    # LoRA layer's cast_input_dtype_enabled is False from train begin to train end, so a bf16 activation
    # is no longer copied to the fp32 adapters' dtype (and back by autocast) in each LoRA layer; under
    # autocast the LoRA matmuls see the same bf16 values (harness/worker/lora_cast.py; docs/explain.md).
    lora_input_cast: Optional[str] = None
    # A controlled rerun's one change: the gradient checkpointing kind. null: the job's (non-reentrant, pinned in
    # every framework by the identical recipe). reentrant: torch.utils.checkpoint with use_reentrant=True, the
    # kind unsloth's own checkpoint function is; the same recomputation, the same math, other tensors live when.
    checkpointing: Optional[str] = None


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
    # Where the sweep's HTML report goes (and the reports index is rebuilt): by default reports/ for the
    # default results dir, else RESULTS_DIR/reports (see reports_dir_for).
    reports_dir: str = "${default_reports_dir:${results_dir}}"
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


def _compared_frameworks() -> str:
    from harness.frameworks import registry

    return ",".join(registry.compared())


def _reference_framework() -> str | None:
    from harness.frameworks import registry

    return registry.reference()


DEFAULT_RESULTS_DIR = "results"
DEFAULT_REPORTS_DIR = "reports"


def reports_dir_for(results_dir: str) -> str:
    """``reports_dir`` when it is not given: the working directory's ``reports/`` for its ``results/`` (the
    checkout's own layout, where committed reports and their index live), else ``RESULTS_DIR/reports``, so a
    sweep into a results dir elsewhere (a scratch folder, a test's tmp_path) keeps its report beside its
    results and never rewrites the checkout's reports or index."""
    if Path(results_dir).expanduser().resolve() == Path(DEFAULT_RESULTS_DIR).resolve():
        return DEFAULT_REPORTS_DIR
    return str(Path(results_dir).expanduser() / DEFAULT_REPORTS_DIR)


def register_configs() -> None:
    """The schema, and the resolvers conf/config.yaml reads: ``${reference_framework:}`` (a run's default
    framework) and ``${compared_frameworks:}`` (what a plain ``-m`` sweeps) from the framework registry,
    ``${default_reports_dir:RESULTS_DIR}`` (where reports go unless reports_dir is given)."""
    from omegaconf import OmegaConf

    ConfigStore.instance().store(name="harness_schema", node=Config)
    OmegaConf.register_new_resolver("reference_framework", _reference_framework, replace=True)
    OmegaConf.register_new_resolver("compared_frameworks", _compared_frameworks, replace=True)
    OmegaConf.register_new_resolver("default_reports_dir", reports_dir_for, replace=True)
