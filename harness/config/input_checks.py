"""Per-job checks preflight runs on a composed config, beyond what :func:`harness.config.validation.validate` checks.

Each looks at something outside the config's own values (files, interpreters, the model's architecture)
that would otherwise only fail after a worker started, or worse, not fail at all (an
unknown framework version recorded as ``unavailable``, exit 0). Every problem is one ConfigError line.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from harness.config.schema import Config, ConfigError

# ---- framework.version and framework.python -----------------------------------------------------------
def _installed_version(python: str | None, distribution: str) -> str | None:
    """The version of ``distribution`` under ``python`` (None: this interpreter), or None when absent."""
    if python is None:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            return None
    script = ("import importlib.metadata as m\ntry: print(m.version(%r))\n"
              "except m.PackageNotFoundError: print('')" % distribution)
    try:
        out = subprocess.run([python, "-I", "-c", script], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        raise ConfigError(f"framework.python: cannot run {python}: {err}") from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
        raise ConfigError(f"framework.python: {python} is not a working python interpreter ({last[:100]})")
    return out.stdout.strip() or None


def check_framework(cfg: Any) -> None:
    """``framework.python`` names a runnable interpreter, and ``framework.version`` is one the harness can
    run: pinned (envs/NAME-VERSION.txt, built on first use) or installed under the interpreter named.

    A version that is neither is a typo, refused here; ``unavailable`` stays for what only the run can
    find out (unsloth without CUDA, an env whose build fails)."""
    from harness.frameworks import registry

    fw = cfg.framework
    python = fw.python
    if python not in ("env", "current"):
        found = shutil.which(python) if os.sep not in python else python
        if not found or not Path(found).is_file():
            raise ConfigError(f"framework.python: {python} does not exist (use env, current or the path of a python)")
        if not os.access(found, os.X_OK):
            raise ConfigError(f"framework.python: {python} is not executable")
        python = found
    # The distribution whose installed version is the framework's version (the adapter declares it).
    distribution = registry.adapter(fw.name).distribution
    if distribution is None:  # a test double has no package and no versions
        return
    pinned = registry.pinned_versions(fw.name)
    if fw.python == "env":
        if fw.version not in pinned:
            raise ConfigError(f"framework.version={fw.version}: no pinned {fw.name} {fw.version} "
                              f"(envs/{fw.name}-{fw.version}.txt); known versions: {', '.join(pinned) or 'none'}")
        return
    installed = _installed_version(None if fw.python == "current" else python, distribution)
    if installed != fw.version and fw.version not in pinned:
        where = "this interpreter" if fw.python == "current" else python
        has = f"{fw.name} {installed} is installed under {where}" if installed else f"{fw.name} is not installed under {where}"
        raise ConfigError(f"framework.version={fw.version}: {has}; known versions: {', '.join(pinned) or 'none'}")


# ---- results_dir / reports_dir -------------------------------------------------------------------------
def check_writable(field: str, folder: str) -> None:
    """``folder`` is (or can be created as) a writable folder. os.access is not enough: root passes it
    for /proc, so the nearest existing folder is probed with a temporary folder, removed at once."""
    path = Path(folder).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{field}={folder}: exists and is not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{field}={folder}: {existing} is not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".harness-write-probe-", dir=existing)
        os.rmdir(probe)
    except OSError as err:
        raise ConfigError(f"{field}={folder}: cannot write in {existing} ({err.strerror or err})") from None


def check_output_dirs(cfg: Any) -> None:
    check_writable("results_dir", cfg.results_dir)
    if cfg.report:
        check_writable("reports_dir", cfg.reports_dir)


# ---- keys added with + or removed with ~ ---------------------------------------------------------------
def check_known_keys(cfg: Any, overrides: list[str]) -> None:
    """Every key of the composed config is a schema field and every schema field is there.

    Hydra's ``+key=value`` adds a key even to a structured config and ``~key`` removes one; neither has a
    use here (``experiment`` is the one free-form node), so an added key is a typo that would be ignored."""
    schema = OmegaConf.structured(Config)

    def walk(node: Any, reference: Any, prefix: str) -> None:
        # keys(), not ``in``: a DictConfig says a field holding ??? (MISSING) is not "in" it
        node_keys, reference_keys = list(node.keys()), list(reference.keys())
        for key in node_keys:
            name = f"{prefix}{key}"
            if name in ("hydra", "experiment"):
                continue
            if key not in reference_keys:
                given = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] == name]
                how = f" (override {given[0]!r})" if given else ""
                fields = ", ".join(str(k) for k in reference_keys)
                raise ConfigError(f"{name}: unknown key{how}; {prefix.rstrip('.') or 'the config'} has: {fields}")
            if OmegaConf.is_dict(reference._get_node(key)) and OmegaConf.is_dict(node._get_node(key)):
                walk(node[key], reference[key], f"{name}.")
        for key in reference_keys:
            if key not in node_keys:
                raise ConfigError(f"{prefix}{key}: required field removed (~{prefix}{key})")

    walk(cfg, schema, "")


# ---- LoRA targets against the model's architecture ------------------------------------------------------
# Linear modules of the decoder-only architectures the harness runs (Qwen2 / Llama family), by model_type.
_LLAMA_LIKE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MODULES_BY_MODEL_TYPE: dict[str, tuple[str, ...]] = {
    t: _LLAMA_LIKE for t in ("qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2")
}


def _safetensors_names(model_dir: Path) -> list[str]:
    """Tensor names of the model's safetensors files (index or headers only: no weights are read)."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            return list(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}))
        except (OSError, ValueError, AttributeError):
            return []
    names: list[str] = []
    for file in sorted(model_dir.glob("*.safetensors")):
        try:
            with open(file, "rb") as handle:  # 8-byte little-endian header length, then a JSON header
                (length,) = struct.unpack("<Q", handle.read(8))
                names.extend(k for k in json.loads(handle.read(length)) if k != "__metadata__")
        except (OSError, ValueError, struct.error):
            return []
    return names


def model_modules(model_dir: Path, model_config: dict[str, Any]) -> tuple[set[str], str] | None:
    """The module names LoRA can target in this model and where they came from, or None when unknown."""
    names = _safetensors_names(model_dir)
    if names:
        # "model.layers.0.self_attn.q_proj.weight" -> "q_proj" (PEFT matches targets on the name's suffix)
        return {n.rsplit(".", 2)[-2] for n in names if n.count(".") >= 1}, f"the weights in {model_dir}"
    model_type = model_config.get("model_type")
    if model_type in MODULES_BY_MODEL_TYPE:
        return set(MODULES_BY_MODEL_TYPE[model_type]), f"model_type {model_type!r} ({model_dir / 'config.json'})"
    return None


def check_lora_targets(cfg: Any, model_dir: Path, model_config: dict[str, Any]) -> None:
    known = model_modules(model_dir, model_config)
    if known is None:  # an architecture we do not know and no weights to read: the framework decides
        return
    modules, source = known
    for target in cfg.train.lora.targets:
        if str(target).rsplit(".", 1)[-1] not in modules:
            hint = "; all-linear is not supported: list the modules" if str(target) == "all-linear" else ""
            raise ConfigError(f"train.lora.targets: {target!r} is not a module of {cfg.model.hub_id} "
                              f"(from {source}: {', '.join(sorted(modules))}){hint}")
