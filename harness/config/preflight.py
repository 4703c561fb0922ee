"""Check every job of a sweep before the first one starts, so a typo never costs a finished run.

Hydra composes a multirun's jobs one at a time, as each starts; a bad value in the third job would
only surface after two had trained. Here the sweep is expanded the way Hydra's basic sweeper does,
every combination is composed and validated, and the first problem becomes a one-line ConfigError.
"""
from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any, Iterator

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness.config.schema import ConfigError, register_configs
from harness.config.validation import validate
from harness.config.conflicts import check_conflicting_overrides
from harness.data.dataset import prepare
from harness.hub import REPO_ROOT
from harness.config.input_checks import (check_framework, check_known_keys, check_lora_targets,
                                  check_output_dirs)

CONF_DIR = REPO_ROOT / "conf"


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else type(err).__name__
    key = getattr(err, "full_key", None)
    return f"{key}: {first}" if key and key not in first else first


def _culprit(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~") or override


def _composition_error(err: BaseException, overrides: list[str]) -> str:
    """One line for a Hydra/OmegaConf composition error, naming the group, option or field."""
    from hydra.errors import MissingConfigException

    if isinstance(err, MissingConfigException) and err.missing_cfg_file and "/" in err.missing_cfg_file:
        group, option = err.missing_cfg_file.rsplit("/", 1)
        if group == "framework":  # the framework group is the framework registry: its message
            from harness.frameworks import registry

            return f"framework={option}: Unknown framework {option!r}. Available: {registry.available()}"
        known = ", ".join(err.options or []) or "none"
        return f"{group}={option}: unknown {group} option {option!r} (available: {known})"
    cause = err.__cause__
    if cause is not None and type(cause).__module__.startswith("omegaconf"):
        # "Error merging override train.lr=fast" <- "Value 'fast' ... could not be converted to Float"
        message = _one_line(cause)
        key = getattr(cause, "full_key", None)
        given = [o for o in overrides if key and _culprit(o) == key]
        return (f"{message} (override {given[0]!r})" if given else message) + _did_you_mean(cause)
    if str(err).startswith("Ambiguous value for argument"):
        return f"{_one_line(err)}: a sweep needs -m, a list needs key=[a,b]"
    return _one_line(err)


def _did_you_mean(cause: BaseException) -> str:
    """``; did you mean 'batch_size'?`` for an unknown key of a structured config (a dataclass of
    harness/config/schema.py), where one of its fields is close; else nothing."""
    import dataclasses
    import difflib

    key, kind = getattr(cause, "key", None), getattr(cause, "object_type", None)
    if key is None or kind is None or not dataclasses.is_dataclass(kind):
        return ""
    near = difflib.get_close_matches(str(key), [f.name for f in dataclasses.fields(kind)], n=1, cutoff=0.7)
    return f"; did you mean {near[0]!r}?" if near else ""


def check_override_syntax(overrides: list[str]) -> None:
    """Parse each override on its own, so a syntax error names the override it is in."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for override in overrides:
        if not override.lstrip("+~").split("=", 1)[0]:
            raise ConfigError(f"bad override {override!r}: it names no field (expected key=value)")
        if "=" not in override and not override.startswith("~"):
            raise ConfigError(f"bad override {override!r}: expected key=value")
        try:
            parser.parse_overrides([override])
        except OverrideParseException as err:
            raise ConfigError(f"bad override {override!r}: {_one_line(err)}") from None


# Hydra flags run passes on. Every argument that does not start with "-" goes to Hydra as an override,
# so flags that take a value (--cfg job, --config-name X) cannot be passed through, and --info/--cfg
# print instead of running.
KNOWN_FLAGS = ("-m", "--multirun", "-r", "--run", "-h", "--help", "--hydra-help", "--version")


def check_flags(flags: list[str]) -> None:
    for flag in flags:
        if flag not in KNOWN_FLAGS:
            raise ConfigError(f"unknown option {flag!r} (run takes key=value overrides and -m/--multirun)")


def expand_sweep(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists of every job Hydra would launch, config-level sweep params included."""
    if not multirun:
        return [overrides]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    register_configs()  # the resolvers conf/config.yaml's sweep params use
    params = OmegaConf.load(CONF_DIR / "config.yaml").get("hydra", {}).get("sweeper", {}).get("params", {}) or {}
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    defaults = [f"{k}={v}" for k, v in params.items() if k not in given]
    parsed = OverridesParser.create().parse_overrides(defaults + overrides)
    batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [list(job) for batch in batches for job in batch]


def compose_job(overrides: list[str]) -> Any:
    """The config Hydra composes for one job's overrides; the caller's own copy to read or change."""
    return copy.deepcopy(_composed(str(CONF_DIR), tuple(overrides)))


@functools.lru_cache(maxsize=512)
def _composed(conf_dir: str, overrides: tuple[str, ...]) -> Any:
    """Composed once per process and override list: a composition takes ~0.2 s, and ``run`` needs every job's
    config twice before Hydra starts (the preflight, then the results dirs to lock), a report's reproduce
    section once per framework of each point. Interpolations (``${oc.env:...}``, resolvers) are left in the
    config and resolve when read, so a cached config reads the environment of its reader; the defaults list's
    ``${reference_framework:}`` comes from the framework registry, itself read once per process. A failed
    composition raises each time (lru_cache keeps no exceptions)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir, version_base=None):
        return compose(config_name="config", overrides=list(overrides))


def _looks_like_path(hub_id: str) -> bool:
    """A Hub id is ``name`` or ``org/name``; anything else can only be meant as a local folder."""
    return hub_id.startswith(("/", ".", "~")) or hub_id.count("/") > 1 or "\\" in hub_id


def check_model(cfg: Any) -> None:
    """The model folder holds a readable config.json whose positions fit train.max_length and whose
    modules include every LoRA target (a Hub id: its config.json, from the cache or fetched now)."""
    from harness.hub import mirror_root, resolve_model

    hub_id = cfg.model.hub_id
    path = resolve_model(hub_id)
    if not Path(path).exists():
        mirror = mirror_root()
        if _looks_like_path(hub_id):
            raise ConfigError(f"model.hub_id: model folder {hub_id} does not exist")
        if mirror is not None:
            raise ConfigError(f"model.hub_id: {hub_id} is not in the offline mirror {mirror}")
        config_file = _hub_config(hub_id)  # a Hub id: its config.json now (small), the weights at run time
    else:
        config_file = Path(path) / "config.json"
    _check_model_config(cfg, config_file, path)


def _hub_config(hub_id: str) -> Path:
    """``config.json`` of a Hub model, from the local Hugging Face cache or fetched (a few kB), so a model
    the machine cannot get is refused before any run starts, not after a worker has imported torch."""
    from harness.hub import MIRROR_ENV, go_offline_unless_reachable, hub_host

    offline = go_offline_unless_reachable()
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=hub_id, filename="config.json"))
    except Exception as err:  # unknown repo, gated, no network and not cached: one line naming it
        reason = f"{hub_host()} unreachable and not in the local cache" if offline else _one_line(err)
        raise ConfigError(f"model.hub_id: cannot get {hub_id}'s config.json from the Hub ({reason}; set {MIRROR_ENV} "
                          "to an offline mirror or model.hub_id to a local folder)") from None


def _check_model_config(cfg: Any, config_file: Path, path: str) -> None:
    if not config_file.is_file():
        raise ConfigError(f"model.hub_id: {path} has no config.json")
    try:
        model_config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"model.hub_id: {config_file} is unreadable: {_one_line(err)}") from None
    positions = model_config.get("max_position_embeddings") if isinstance(model_config, dict) else None
    if positions and cfg.train.max_length > positions:
        raise ConfigError(f"train.max_length={cfg.train.max_length} exceeds the model's max_position_embeddings={positions} ({config_file})")
    if isinstance(model_config, dict):
        check_lora_targets(cfg, config_file.parent, model_config)


def check_distinct_jobs(jobs: list[list[str]], configs: list[Any], overrides: list[str]) -> None:
    """No two jobs of a sweep are the same job (``framework=trl,trl``, ``train.lr=1e-4,0.0001``): the
    second would train the same run dir again or be skipped as already done, silently."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    seen: dict[str, int] = {}
    for number, cfg in enumerate(configs):
        key = json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True, default=str)
        if key not in seen:
            seen[key] = number
            continue
        repeated = [o for o, parsed in zip(overrides, OverridesParser.create().parse_overrides(overrides))
                    if parsed.is_sweep_override()
                    and len(set(parsed.sweep_string_iterator())) < len(list(parsed.sweep_string_iterator()))]
        where = f"a value repeats in {', '.join(repeat for repeat in repeated)}" if repeated else \
            f"jobs {seen[key] + 1} ({' '.join(jobs[seen[key]])}) and {number + 1} ({' '.join(jobs[number])})"
        raise ConfigError(f"the sweep runs the same job twice: {where}")


def composed_jobs(overrides: list[str], multirun: bool) -> Iterator[tuple[list[str], Any]]:
    """Each Hydra job of the command as ``(its overrides, its composed config)``, composition errors as one
    ConfigError line naming the override; shared by ``run``'s preflight and ``plan``."""
    check_override_syntax(overrides)
    check_conflicting_overrides(overrides)
    try:
        jobs = expand_sweep(overrides, multirun)
    except Exception as err:  # a sweep value hydra's grammar refuses (range(...), choice(...))
        if type(err).__module__.startswith(("hydra", "omegaconf")):
            raise ConfigError(_one_line(err)) from None
        raise
    for job_overrides in jobs:
        try:
            cfg = compose_job(job_overrides)
            OmegaConf.to_container(cfg, resolve=True)
        except (OmegaConfBaseException, ValueError) as err:
            raise ConfigError(_composition_error(err, job_overrides)) from None
        except Exception as err:  # hydra's composition errors (unknown group option, bad override)
            if type(err).__module__.startswith(("hydra", "omegaconf")):
                raise ConfigError(_composition_error(err, job_overrides)) from None
            raise
        yield job_overrides, cfg


def checked_jobs(overrides: list[str], multirun: bool, *, cuda_available: bool) -> Iterator[tuple[list[str], Any, Any]]:
    """Each job of the command as ``(its overrides, its config, its PreparedData)``, checked as ``run``
    checks it (the results dirs' writability aside: the caller's); shared by preflight and ``plan``, so a
    command ``plan`` accepts is one ``run`` accepts. Every config is checked before any data is prepared,
    so a refusal is the only line printed. Raises ConfigError."""
    jobs, configs = [], []
    for job_overrides, cfg in composed_jobs(overrides, multirun):
        check_known_keys(cfg, job_overrides)
        validate(cfg, cuda_available=cuda_available)
        check_framework(cfg)
        check_model(cfg)
        jobs.append(job_overrides)
        configs.append(cfg)
    check_distinct_jobs(jobs, configs, overrides)
    for job_overrides, cfg in zip(jobs, configs):
        yield job_overrides, cfg, prepare(cfg.dataset)  # refuses a bad record and a num_eval beyond the data


def preflight(overrides: list[str], multirun: bool, *, cuda_available: bool) -> int:
    """Validate every job of the sweep; return how many jobs it has. Raises ConfigError."""
    count = 0
    for _, cfg, _ in checked_jobs(overrides, multirun, cuda_available=cuda_available):
        check_output_dirs(cfg)
        count += 1
    return count
