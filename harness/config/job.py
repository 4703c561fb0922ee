"""The job: the fully resolved description of one run, written to ``job.json`` for the worker.

The parent composes it from the Hydra config; the worker (in the framework's own interpreter) reads
it back. ``job_hash`` covers everything that changes what is trained and measured, and nothing that
only says where or how often (repeat index, result folder, timeout), so a re-run of the same sweep
finds its earlier results.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from harness.hub import REPO_ROOT, resolve_model

if TYPE_CHECKING:
    from harness.records import JobFile

# Keys of the top-level config that describe the run's bookkeeping, not the job.
_NOT_PART_OF_JOB = ("results_dir", "reports_dir", "report", "force", "timeout_s", "repeats",
                    "env_auto_build", "env_wheelhouse", "keep_outputs", "sample_interval_ms", "experiment",
                    "wait_for_lock")

# Framework fields that say how the job runs, not what it trains: which interpreter, which adapter class
# (the registered one of framework.name, so the name and version already identify it).
FRAMEWORK_RUN_KEYS = ("python", "adapter")

Job = dict[str, Any]


def _group_datasets() -> dict[str, dict]:
    """Each dataset group's own ``name`` -> its ``hub_id`` and ``train_file`` as its yaml sets them."""
    out = {}
    for path in (REPO_ROOT / "conf" / "dataset").glob("*.yaml"):
        conf = OmegaConf.load(path)
        out[str(conf.get("name"))] = {"hub_id": conf.get("hub_id"), "train_file": conf.get("train_file")}
    return out


def dataset_label(dataset: DictConfig) -> str:
    """The dataset's name in run dirs, reports and baselines. ``dataset.path=FILE`` replaces the files of
    the dataset group, and ``dataset.hub_id=ORG/NAME`` (or another ``train_file``) its source, so the
    group's name (tiny_medical) would mislabel the run: it is named after the file or the Hub dataset
    instead, unless ``dataset.name`` was set to a name of the user's own."""
    group = _group_datasets().get(str(dataset.name))
    if group is None:  # a name of the user's own
        return str(dataset.name)
    if dataset.path:
        return Path(dataset.path).stem
    if dataset.hub_id and dataset.hub_id != group["hub_id"]:
        return str(dataset.hub_id).rstrip("/").split("/")[-1]
    if dataset.train_file and dataset.train_file != group["train_file"]:
        return Path(str(dataset.train_file)).stem
    return str(dataset.name)


def job_from_config(cfg: DictConfig, *, data_digest: str, data_format: str | None = None) -> Job:
    """``data_format``: the dataset's format as prepared (``dataset.format=auto`` resolved), which the
    adapters read to choose how to feed the records."""
    job: Job = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    job["dataset"]["name"] = dataset_label(cfg.dataset)
    for key in _NOT_PART_OF_JOB:
        job.pop(key, None)
    for key in FRAMEWORK_RUN_KEYS:
        job["framework"].pop(key, None)
    job["model"]["path"] = resolve_model(cfg.model.hub_id)
    job["dataset"]["digest"] = data_digest
    if data_format is not None:
        job["dataset"]["format"] = data_format
    if not (job.get("profile") or {}).get("kind"):
        # Off (the default): no trace of the profile group in the job, so an unprofiled run's job.json,
        # hashes, run dir and result are exactly those of a run from before profiling existed.
        job.pop("profile", None)
    if job.get("recipe") == IDENTICAL_RECIPE or "recipe" not in job:
        # The identical recipe (the default): its job.json and hashes are those of a run from before recipes
        # existed. A recommended job keeps the recipe and the framework's feature block, so editing a
        # feature in conf/framework/NAME.yaml makes another job (resume never mixes two recipes).
        job = identical_twin(job)
    return job


# The recipe every job had before the recipe group existed (conf/recipe/identical.yaml).
IDENTICAL_RECIPE = {"name": "identical", "packing": "framework"}
# Framework fields that only a recommended job carries (conf/framework/NAME.yaml).
RECIPE_FRAMEWORK_KEYS = ("recommended", "always_on")


def identical_twin(job: Job) -> Job:
    """The job with the identical recipe: the run a recommended run is checked against (same task, same
    framework). An identical job is its own twin."""
    twin = json.loads(json.dumps(job))
    twin.pop("recipe", None)
    for key in RECIPE_FRAMEWORK_KEYS:
        (twin.get("framework") or {}).pop(key, None)
    return twin


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


# The launcher is part of the job (nproc changes the effective batch), but the single-process default
# hashes as jobs did before the launcher group existed, so earlier results and baselines still match.
DEFAULT_LAUNCHER = {"name": "local", "nproc": 1}


# Dataset fields added with conversation formats, at the values every earlier (alpaca) job had: left out
# of the hash so those jobs keep their hashes. loss_on changes nothing for single-turn alpaca records.
DATASET_FIELD_DEFAULTS = {"config": None, "split": "train", "eval_split": None, "format": "alpaca",
                          "loss_on": "all_assistant"}


# Train fields added later, at the value that behaves as every earlier job did (a fixed warm-up; PyTorch's
# own choice of SDPA kernel).
TRAIN_FIELD_DEFAULTS = {"settle_factor": None, "sdpa_backend": "auto"}
# Profile fields added later, at the value every earlier profiled job ran with (each framework's own loss
# and LoRA input cast).
PROFILE_FIELD_DEFAULTS = {"loss": None, "lora_input_cast": None, "checkpointing": None}


def _hashable(job: Job) -> Job:
    hashed = json.loads(json.dumps(job))
    if hashed.get("launcher") == DEFAULT_LAUNCHER:
        hashed.pop("launcher")
    if hashed.get("recipe", IDENTICAL_RECIPE) == IDENTICAL_RECIPE:
        hashed = identical_twin(hashed)  # job_from_config drops it already
    dataset = hashed.get("dataset") or {}
    alpaca = dataset.get("format") in ("alpaca", "auto")
    for key, default in DATASET_FIELD_DEFAULTS.items():
        if key in dataset and (dataset[key] == default or (alpaca and key in ("format", "loss_on"))):
            dataset.pop(key)
    if "profile" in hashed and not (hashed["profile"] or {}).get("kind"):
        hashed.pop("profile")  # a profile that is off is no profile (job_from_config drops it already)
    profile = hashed.get("profile") or {}
    for key, default in PROFILE_FIELD_DEFAULTS.items():
        if key in profile and profile[key] == default:
            profile.pop(key)
    train = hashed.get("train") or {}
    for key, default in TRAIN_FIELD_DEFAULTS.items():
        if key in train and train[key] == default:
            train.pop(key)
    return hashed


def job_hash(job: Job) -> str:
    """Identity of the job, framework included; stable across machines and repeats."""
    hashed = _hashable(job)
    hashed["model"].pop("path", None)  # a local path differs between machines; hub_id stays
    return _digest(hashed)


def point_hash(job: Job) -> str:
    """Identity of the sweep point: the job without the framework, so frameworks can be compared."""
    hashed = _hashable(job)
    hashed.pop("framework", None)
    hashed["model"].pop("path", None)
    return _digest(hashed)


def run_dir_for(results_dir: Path, job: Job, repeat: int) -> Path:
    fw = job["framework"]
    point = f"{job['model']['name']}-{job['dataset']['name']}-{point_hash(job)}"
    return results_dir / job["suite"] / point / f"{fw['name']}-{fw['version']}-{job_hash(job)}" / f"r{repeat}"


def write_job(run_dir: Path, job: "JobFile") -> Path:
    from harness.records import run_files
    from harness.atomic import atomic_write_json

    path = run_dir / run_files.JOB
    atomic_write_json(path, job.to_dict())
    return path



# Train fields a profiled controlled rerun may change (its one change, named in the report's Why section):
# the run still explains the point of the same job with the field at its default.
CONTROL_TRAIN_FIELDS = ("sdpa_backend",)


def profile_free_point_hash(job: Job) -> str:
    """The point hash of ``job`` without its profile, every train field kept: the unprofiled point a profiled
    run is the profile of when nothing else differs."""
    return point_hash({k: v for k, v in json.loads(json.dumps(job)).items() if k != "profile"})


def unprofiled_point_hash(job: Job) -> str:
    """The sweep point a profiled job explains where no unprofiled point of its own train fields exists: its
    point hash without the profile (a profiled run is its own sweep point, so it is never compared for speed
    with unprofiled runs; the report joins them here), and with a controlled rerun's train field
    (``train.sdpa_backend``) at its default. harness/report/why_points.py picks between the two."""
    plain = {k: v for k, v in json.loads(json.dumps(job)).items() if k != "profile"}
    for key in CONTROL_TRAIN_FIELDS:
        (plain.get("train") or {}).pop(key, None)
    return point_hash(plain)


def control_train_values(job: Job) -> dict[str, Any]:
    """The job's CONTROL_TRAIN_FIELDS, each at its default where the job does not set it."""
    train = job.get("train") or {}
    return {key: train.get(key) or TRAIN_FIELD_DEFAULTS[key] for key in CONTROL_TRAIN_FIELDS}
