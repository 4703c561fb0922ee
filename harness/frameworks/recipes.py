"""Recipes (issue 17, docs/recipes.md): ``identical`` (the same math in every framework, the default) or
``recommended`` (each framework's own speed and memory features for the same task).

A framework's features are data: the ``recommended:`` block of ``conf/framework/NAME.yaml``, one mapping per
feature (``FEATURE_KEYS``), each naming its source and what it changes (data / math / impl). This module is
the one pure place that turns that block into native arguments: :func:`feature_plan` decides each feature's
status for a job, :func:`apply_recipe` merges the applied features' ``args`` into an adapter's native
arguments. Nothing here imports a framework (both processes use it; adapters call it from ``native_args``).

What only the worker can know comes in through ``job["runtime"]``: ``recipe_unavailable`` (feature id ->
why it cannot run here: a package that is not importable, Triton without a GPU; :func:`missing_requirements`)
and ``recipe_budget`` (rows per step and steps when packing changes the samples a step holds;
harness/data/budget.py). Both are set by the worker before it calls the adapter, so ``native_args`` stays a
function of the job alone.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Mapping

Job = dict[str, Any]

RECIPES = ("identical", "recommended")
PACKING = ("framework", "on", "off")
CHANGES = ("data", "math", "impl")
MODES = ("lora", "qlora")
DEVICES = ("cpu", "cuda")
IDENTICAL = {"name": "identical", "packing": "framework"}

FEATURE_KEYS = {
    "id": "a short name, unique in the file (the probe in harness/worker/live_fields/recipe_probes.py)",
    "use": "true: in the recommended recipe; false: listed with its reason, not applied",
    "reason": "why it is not used (required when use is false)",
    "what": "one line: what it does",
    "changes": "data | math | impl",
    "modes": "lora and/or qlora",
    "only_if": "train fields the feature assumes (optimizer: adamw_torch): otherwise not for this job",
    "packing": "true: a packing feature, switched by recipe.packing",
    "args": "native arguments by section (sft_config, model_kwargs, ..., adapter)",
    "drop": "native argument names removed, by section",
    "requires": "import names the worker checks before training",
    "devices": "cpu and/or cuda: where it can run",
    "fields": "the audit fields it is expected to change",
    "source": "the URL that recommends it",
    "where": "the source lines read (file:line at the pinned version)",
}
ALWAYS_ON_KEYS = {"what": "what is on in both recipes", "changes": "data | math | impl",
                  "where": "the source lines", "read_back": "how the audit sees it"}

# Statuses of a feature in one job (feature_plan); "applied" becomes "active" or "not seen" after training.
APPLIED, NOT_USED, OFF, OTHER_MODE, UNAVAILABLE = "applied", "not used", "off", "not for this mode", "unavailable"
OTHER_JOB = "not for this job"


class RecipeError(ValueError):
    """A bad recipe or feature block: one line naming the field, file and feature."""


@dataclass(frozen=True)
class Feature:
    id: str
    use: bool
    changes: str
    source: str
    what: str = ""
    reason: str = ""
    modes: tuple[str, ...] = MODES
    packing: bool = False
    args: Mapping[str, Mapping[str, Any]] | None = None
    drop: Mapping[str, tuple[str, ...]] | None = None
    requires: tuple[str, ...] = ()
    devices: tuple[str, ...] = DEVICES
    fields: tuple[str, ...] = ()
    where: str = ""
    only_if: Mapping[str, Any] | None = None


def check_recipe(name: str, packing: str, *, train_packing: bool) -> None:
    if name not in RECIPES:
        raise RecipeError(f"recipe.name must be one of {'|'.join(RECIPES)}, got {name!r}")
    if packing not in PACKING:
        raise RecipeError(f"recipe.packing must be one of {'|'.join(PACKING)}, got {packing!r}")
    if name == "identical" and packing != "framework":
        raise RecipeError(f"recipe.packing={packing} needs recipe=recommended (the identical recipe packs as "
                          "train.packing says)")
    if name == "recommended" and train_packing:
        raise RecipeError("train.packing=true contradicts recipe=recommended (the recipe owns packing: use "
                          "recipe.packing=on)")


def _strings(value: Any, where: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise RecipeError(f"{where}: expected a list of strings, got {value!r}")
    bad = [v for v in value if allowed is not None and v not in allowed]
    if bad:
        raise RecipeError(f"{where}: {bad[0]!r} is not one of {'|'.join(allowed or ())}")
    return tuple(value)


def _feature(entry: Any, where: str, seen: set[str]) -> Feature:
    if not isinstance(entry, Mapping):
        raise RecipeError(f"{where}: expected a mapping of {', '.join(FEATURE_KEYS)}, got {entry!r}")
    ident = entry.get("id")
    if not isinstance(ident, str) or not ident.isidentifier():
        raise RecipeError(f"{where}: id must be a name (letters, digits, _), got {ident!r}")
    where = f"{where} ({ident})"
    if ident in seen:
        raise RecipeError(f"{where}: id {ident!r} appears twice")
    seen.add(ident)
    unknown = sorted(set(entry) - set(FEATURE_KEYS))
    if unknown:
        raise RecipeError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(FEATURE_KEYS)})")
    use = entry.get("use")
    if not isinstance(use, bool):
        raise RecipeError(f"{where}: use must be true or false, got {use!r}")
    reason = entry.get("reason") or ""
    if not use and not (isinstance(reason, str) and reason.strip()):
        raise RecipeError(f"{where}: use: false needs a reason (why it is listed, not used)")
    changes = entry.get("changes")
    if changes not in CHANGES:
        raise RecipeError(f"{where}: changes must be one of {'|'.join(CHANGES)}, got {changes!r}")
    source = entry.get("source")
    if not isinstance(source, str) or not source.startswith(("https://", "http://")):
        raise RecipeError(f"{where}: source must be the URL that recommends it, got {source!r}")
    args = entry.get("args") or {}
    if not isinstance(args, Mapping) or not all(isinstance(v, Mapping) for v in args.values()):
        raise RecipeError(f"{where}: args must map a section name to its arguments, got {args!r}")
    drop = entry.get("drop") or {}
    if not isinstance(drop, Mapping):
        raise RecipeError(f"{where}: drop must map a section name to argument names, got {drop!r}")
    only_if = entry.get("only_if") or {}
    if not isinstance(only_if, Mapping):
        raise RecipeError(f"{where}: only_if must map train fields to values, got {only_if!r}")
    packing = entry.get("packing", False)
    if not isinstance(packing, bool):
        raise RecipeError(f"{where}: packing must be true or false, got {packing!r}")
    return Feature(
        id=ident, use=use, changes=changes, source=source, what=str(entry.get("what") or ""), reason=str(reason),
        modes=_strings(entry.get("modes", list(MODES)), f"{where}: modes", MODES), packing=packing,
        args={k: dict(v) for k, v in args.items()},
        drop={k: _strings(v, f"{where}: drop.{k}") for k, v in drop.items()},
        requires=_strings(entry.get("requires", []), f"{where}: requires"),
        devices=_strings(entry.get("devices", list(DEVICES)), f"{where}: devices", DEVICES),
        fields=_strings(entry.get("fields", []), f"{where}: fields"), where=str(entry.get("where") or ""),
        only_if=dict(only_if))


def parse_features(entries: Any, where: str) -> list[Feature]:
    """The ``recommended:`` block of a framework's yaml, checked (RecipeError names file and feature)."""
    if entries is None:
        return []
    if not isinstance(entries, (list, tuple)):
        raise RecipeError(f"{where}: recommended must be a list of features, got {entries!r}")
    seen: set[str] = set()
    return [_feature(e, f"{where}: recommended[{i}]", seen) for i, e in enumerate(entries)]


def parse_always_on(entries: Any, where: str) -> list[dict[str, Any]]:
    if entries is None:
        return []
    if not isinstance(entries, (list, tuple)):
        raise RecipeError(f"{where}: always_on must be a list, got {entries!r}")
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("what"), str):
            raise RecipeError(f"{where}: always_on[{i}]: expected a mapping with 'what', got {entry!r}")
        unknown = sorted(set(entry) - set(ALWAYS_ON_KEYS))
        if unknown:
            raise RecipeError(f"{where}: always_on[{i}]: unknown key {unknown[0]!r} (known: {', '.join(ALWAYS_ON_KEYS)})")
    return [dict(e) for e in entries]


# ---- one job ---------------------------------------------------------------------------------------------
def recipe_of(job: Mapping[str, Any]) -> dict[str, Any]:
    """The job's recipe; identical where the job has none (identical jobs carry no recipe: their hash)."""
    return {**IDENTICAL, **(job.get("recipe") or {})}


def is_recommended(job: Mapping[str, Any]) -> bool:
    return recipe_of(job)["name"] == "recommended"


def features(job: Mapping[str, Any]) -> list[Feature]:
    fw = job.get("framework") or {}
    return parse_features(fw.get("recommended") or [], f"conf/framework/{fw.get('name')}.yaml")


def _mode(job: Mapping[str, Any]) -> str:
    return "qlora" if (job.get("train") or {}).get("quantization") == "4bit" else "lora"


def _status(feature: Feature, job: Mapping[str, Any]) -> tuple[str, str]:
    packing = recipe_of(job)["packing"]
    if feature.packing and packing == "off":
        return OFF, "recipe.packing=off"
    used = feature.use or (feature.packing and packing == "on")
    if not used:
        return NOT_USED, feature.reason
    if _mode(job) not in feature.modes:
        return OTHER_MODE, f"only for {'/'.join(feature.modes)}"
    train = job.get("train") or {}
    for key, wanted in (feature.only_if or {}).items():
        if train.get(key) != wanted:
            # e.g. fused AdamW is the same AdamW: it must not replace an optimizer the user chose
            return OTHER_JOB, f"assumes train.{key}={wanted}, the job has {train.get(key)!r}"
    unavailable = ((job.get("runtime") or {}).get("recipe_unavailable") or {}).get(feature.id)
    if unavailable:
        return UNAVAILABLE, str(unavailable)
    return APPLIED, ("recipe.packing=on" if feature.packing and not feature.use else "")


def feature_plan(job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each feature of a recommended job with its status here (empty for an identical job)."""
    if not is_recommended(job):
        return []
    out = []
    for f in features(job):
        status, reason = _status(f, job)
        out.append({"id": f.id, "changes": f.changes, "what": f.what, "source": f.source, "where": f.where,
                    "packing": f.packing, "fields": list(f.fields), "status": status, "reason": reason})
    return out


def applied(job: Mapping[str, Any]) -> list[Feature]:
    if not is_recommended(job):
        return []
    return [f for f in features(job) if _status(f, job)[0] == APPLIED]


def adapter_flags(job: Mapping[str, Any]) -> dict[str, Any]:
    """The ``args.adapter`` flags of the applied features: what adapter code does beyond plain arguments
    (trl ``pretruncate``, unsloth ``auto_padding_free``...). Empty for an identical job."""
    flags: dict[str, Any] = {}
    for f in applied(job):
        flags.update((f.args or {}).get("adapter") or {})
    return flags


def packs(job: Mapping[str, Any]) -> bool:
    """Whether an applied feature packs (the samples a step holds change: the token budget applies)."""
    return any(f.packing for f in applied(job))


def apply_recipe(job: Mapping[str, Any], native: dict[str, Any], *, flat: str | None = None,
                 trainer_section: str | None = None, batch_key: str = "per_device_train_batch_size") -> dict[str, Any]:
    """``native`` with the applied features' ``args`` merged in and their ``drop`` names removed (a copy;
    ``native`` itself is never changed). ``flat``: the section name whose arguments are ``native``'s own
    top level (LLaMA-Factory's one flat dict); ``trainer_section``: where the Trainer's
    ``per_device_train_batch_size`` / ``max_steps`` live (None: the top level), which the token budget
    sets when a feature packs; ``batch_key``: the name of the rows per step there (axolotl's
    ``micro_batch_size``). An identical job's ``native`` comes back unchanged (equal, not copied)."""
    if not is_recommended(job):
        return native
    out = copy.deepcopy(native)

    def section(name: str) -> dict[str, Any]:
        if name == flat:
            return out
        return out.setdefault(name, {})

    for f in applied(job):
        for name, values in (f.args or {}).items():
            if name != "adapter":  # flags for adapter code (adapter_flags), not arguments
                section(name).update(copy.deepcopy(dict(values)))
        for name, keys in (f.drop or {}).items():
            for key in keys:
                section(name).pop(key, None)
    budget = (job.get("runtime") or {}).get("recipe_budget")
    if packs(job) and budget:
        trainer = out if trainer_section is None else out[trainer_section]
        trainer[batch_key] = int(budget["rows_per_step"])
        trainer["max_steps"] = int(budget["steps"])
    return out


def missing_requirements(job: Mapping[str, Any], device: str,
                         find_spec: Callable[[str], Any]) -> dict[str, str]:
    """Feature id -> why it cannot run here, for the features a recommended job would apply: a device it
    does not run on (Liger's Triton kernels need a GPU) or a module ``find_spec`` does not find."""
    out: dict[str, str] = {}
    job = {**job, "runtime": {**(job.get("runtime") or {}), "recipe_unavailable": {}}}
    for f in applied(job):
        if device not in f.devices:
            out[f.id] = f"needs {'/'.join(f.devices)}, this run is on {device}"
            continue
        for module in f.requires:
            try:
                found = find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                out[f.id] = f"{module} is not importable in this environment"
                break
    return out
