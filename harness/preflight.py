"""Check every job of a sweep before the first one starts, so a typo never costs a finished run.

Hydra composes a multirun's jobs one at a time, as each starts; a bad value in the third job would
only surface after two had trained. Here the sweep is expanded the way Hydra's basic sweeper does,
every combination is composed and validated, and the first problem becomes a one-line ConfigError.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness.config import ConfigError, register_configs, validate
from harness.data import prepare
from harness.hub import REPO_ROOT

CONF_DIR = REPO_ROOT / "conf"


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else type(err).__name__
    key = getattr(err, "full_key", None)
    return f"{key}: {first}" if key and key not in first else first


def expand_sweep(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists of every job Hydra would launch, config-level sweep params included."""
    if not multirun:
        return [overrides]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.load(CONF_DIR / "config.yaml").get("hydra", {}).get("sweeper", {}).get("params", {}) or {}
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    defaults = [f"{k}={v}" for k, v in params.items() if k not in given]
    parsed = OverridesParser.create().parse_overrides(defaults + overrides)
    batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [list(job) for batch in batches for job in batch]


def compose_job(overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name="config", overrides=overrides)


def check_model(cfg: Any) -> None:
    from harness.hub import resolve_model

    path = resolve_model(cfg.model.hub_id)
    if not Path(path).exists():
        return  # a Hub id fetched at run time; from_pretrained reports it
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"model.hub_id: {path} has no config.json")
    positions = json.loads(config_file.read_text()).get("max_position_embeddings")
    if positions and cfg.train.max_length > positions:
        raise ConfigError(f"train.max_length={cfg.train.max_length} exceeds the model's max_position_embeddings={positions} ({config_file})")


def preflight(overrides: list[str], multirun: bool, *, cuda_available: bool) -> int:
    """Validate every job of the sweep; return how many jobs it has. Raises ConfigError."""
    jobs = expand_sweep(overrides, multirun)
    for job_overrides in jobs:
        try:
            cfg = compose_job(job_overrides)
            OmegaConf.to_container(cfg, resolve=True)
        except (OmegaConfBaseException, ValueError) as err:
            raise ConfigError(_one_line(err)) from None
        except Exception as err:  # hydra's composition errors (unknown group option, bad override)
            if type(err).__module__.startswith(("hydra", "omegaconf")):
                raise ConfigError(_one_line(err)) from None
            raise
        validate(cfg, cuda_available=cuda_available)
        check_model(cfg)
        prepare(cfg.dataset)
    return len(jobs)
