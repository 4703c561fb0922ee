"""The reproduce command of a report, rebuilt from the recorded job configs and checked with ``plan``.

For every distinct job the recorded ``job`` is compared, leaf by leaf, with what Hydra composes today
from ``conf/`` (the suite's experiment preset when one exists, the framework and the groups the record
names); every leaf that differs becomes an override (``train.quantization=4bit``,
``model.weights=random``, ``launcher.nproc=1``), and ``repeats=N`` is the number of repeats found. Jobs that
share their overrides become one ``-m`` sweep over the frameworks. Then :func:`verify` composes each
command through :func:`harness.cli.plan.plan_jobs` and compares the point hashes with the runs', naming the
fields that still differ (typically the dataset digest, when data preparation changed since the runs).
Settings that do not enter the job (``timeout_s``, ``results_dir``, ...) are not recorded, so not replayed.
"""
from __future__ import annotations

import contextlib
import io
import shlex
from typing import Any, Callable

from harness.frameworks import registry
from harness.records import Result

# Leaves that are not settings: filled in by the harness from the machine or the data.
DERIVED = ("model.path", "dataset.digest")
GROUPS = ("model", "dataset", "launcher", "recipe")
# A recommended job's framework blocks (harness/frameworks/recipes.py): config files, never overrides.
RECIPE_BLOCKS = ("framework.recommended", "framework.always_on")


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(node, dict) and node:
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = node
    return out


def _composed_job(overrides: list[str]) -> dict[str, Any]:
    """The job Hydra composes from ``overrides``, without the data digest and model path."""
    from omegaconf import OmegaConf

    from harness.config.job import _NOT_PART_OF_JOB, FRAMEWORK_RUN_KEYS, IDENTICAL_RECIPE, identical_twin
    from harness.config.preflight import compose_job

    job = OmegaConf.to_container(compose_job(overrides), resolve=True)
    for key in _NOT_PART_OF_JOB:
        job.pop(key, None)
    for key in FRAMEWORK_RUN_KEYS:
        job["framework"].pop(key, None)
    if job.get("recipe") == IDENTICAL_RECIPE:
        job = identical_twin(job)  # as job_from_config records it: no recipe, no feature block
    return job


def _group_option(group: str, name: Any) -> str | None:
    """The conf/<group>/*.yaml option whose ``name`` is ``name``."""
    from omegaconf import OmegaConf

    from harness.config.preflight import CONF_DIR

    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        if OmegaConf.load(path).get("name") == name:
            return path.stem
    return None


def _value(key: str, value: Any) -> str:
    """``value`` in Hydra's override grammar, bare where it parses back to itself, else quoted."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(_value(key, v) for v in value) + "]"
    text = str(value)
    try:
        parsed = OverridesParser.create().parse_override(f"{key}={text}").value()
        if parsed == value:
            return text
    except Exception:  # noqa: BLE001  (not parseable bare: quote it)
        pass
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


Compose = Callable[[list[str]], dict[str, Any]]


def job_overrides(job: dict[str, Any], compose: Compose = _composed_job) -> tuple[list[str], list[str]]:
    """(overrides that recreate ``job`` with today's conf/, notes on what cannot be expressed). ``compose``:
    :func:`_composed_job` or a memo of it (its result is only read here)."""
    from omegaconf import OmegaConf

    from harness.config.preflight import CONF_DIR

    fw = (job.get("framework") or {}).get("name")
    base: list[str] = []
    suite = job.get("suite")
    preset = CONF_DIR / "experiment" / f"{suite}.yaml"
    if suite and preset.is_file() and OmegaConf.load(preset).get("suite") == suite:
        base.append(f"experiment={suite}")
    base.append(f"framework={fw}")
    notes: list[str] = []
    composed = compose(base)
    for group in GROUPS:
        wanted = (job.get(group) or {}).get("name")
        if wanted is None or (composed.get(group) or {}).get("name") == wanted:
            continue
        option = _group_option(group, wanted)
        own_file = group == "dataset" and any((job.get("dataset") or {}).get(k) for k in ("path", "train_file"))
        if option is None and own_file:
            continue  # a user's own file: its name is the file's stem, and dataset.path recreates it below
        if option is None:
            notes.append(f"{group} {wanted!r} is not a config option any more (conf/{group}/)")
            continue
        base.append(f"{group}={option}")
    composed = compose(base)
    recorded, today = _flat(job), _flat(composed)
    leaves: list[str] = []
    for key in sorted(recorded):
        if key in DERIVED or key.startswith("runtime."):
            continue
        if key in RECIPE_BLOCKS:
            # A recommended job's feature block is conf/framework/NAME.yaml's, not an override: say when it changed.
            if recorded[key] != today.get(key):
                notes.append(f"{key}: the recipe's features in conf/framework/{fw}.yaml changed since these runs; "
                             "today's apply (the job hash differs)")
            continue
        if key == "dataset.format" and today.get(key) == "auto":
            continue  # the recorded format is what auto detected in the same data (plan's hashes check it)
        if key not in today:
            leaves.append(f"+{key}={_value(key, recorded[key])}")
        elif recorded[key] != today[key]:
            leaves.append(f"{key}={_value(key, recorded[key])}")
    schema_defaults = _flat(compose([f"framework={fw}"]))
    for key in sorted(set(today) - set(recorded) - set(DERIVED)):
        if key == "launcher.name" or key == "launcher.nproc":
            continue  # records from before the launcher group: the default local launcher hashes the same
        if key.startswith("profile."):
            continue  # an unprofiled run's job has no profile (harness/job.py): profile=none, the default
        if key in schema_defaults and today[key] != schema_defaults[key]:
            # Added to the config after these runs, and a preset now sets it: its default is how the runs
            # behaved (train.settle_factor=null: the fixed warm-up of every earlier run).
            leaves.append(f"{key}={_value(key, schema_defaults[key])}")
            notes.append(f"{key} was not recorded (added to the config after these runs); set to its default, "
                         f"{schema_defaults[key]!r}, which is how they ran")
            continue
        notes.append(f"{key} was not recorded (added to the config after these runs); today's value "
                     f"{today[key]!r} applies")
    return base + leaves, notes


def _fw_order(name: str) -> tuple[int, str]:
    return registry.order(name)


def _recorded_job(record: Result) -> dict[str, Any] | None:
    """The run's job as a mapping of config leaves (what commands are rebuilt from), None where not recorded."""
    if not record.has("job") or not record.job.has("framework") or not record.job.framework.to_dict():
        return None
    return record.job.to_dict()


def build_commands(records: list[Result]) -> dict[str, Any]:
    """``{commands: [argv...], notes: [...]}``: argv are the arguments after ``python -m harness run``."""
    jobs: dict[str, dict[str, Any]] = {}
    repeats: dict[str, int] = {}
    for r in records:
        job = _recorded_job(r)
        key = str(r.job_hash)
        if job is None:
            continue
        jobs.setdefault(key, job)
        repeats[key] = max(repeats.get(key, 0), int(r.repeat or 0) + 1)
    notes: list[str] = []
    groups: dict[tuple[str, ...], list[tuple[str, str | None]]] = {}
    # The jobs of one report share most of their compositions (the same experiment and framework, the
    # framework's schema defaults): a Hydra composition each is a fifth of a second, three per job.
    composed: dict[tuple[str, ...], dict[str, Any]] = {}

    def compose(overrides: list[str]) -> dict[str, Any]:
        if tuple(overrides) not in composed:
            composed[tuple(overrides)] = _composed_job(overrides)
        return composed[tuple(overrides)]

    for key, job in jobs.items():
        try:
            overrides, job_notes = job_overrides(job, compose)
        except Exception as err:  # noqa: BLE001  (a record today's conf/ cannot compose: say so, go on)
            notes.append(f"job {key} cannot be composed with today's conf/: {type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}")
            continue
        notes.extend(n for n in job_notes if n not in notes)
        fw = next(o.split("=", 1)[1] for o in overrides if o.startswith("framework="))
        version = next((o for o in overrides if o.startswith("framework.version=")), None)
        rest = tuple(o for o in overrides if not o.startswith(("framework=", "framework.version=")))
        if repeats[key] != 1:
            rest += (f"repeats={repeats[key]}",)
        groups.setdefault(rest, []).append((fw, version))
    commands: list[list[str]] = []
    for rest, members in groups.items():
        members = sorted(set(members), key=lambda m: (_fw_order(m[0]), m[1] or ""))
        if all(v is None for _, v in members):
            names = ",".join(dict.fromkeys(fw for fw, _ in members))
            argv = [a for a in rest if a.startswith("experiment=")] + [f"framework={names}"] + \
                   [a for a in rest if not a.startswith("experiment=")]
            commands.append(argv + (["-m"] if "," in names else []))
            continue
        for fw, version in members:
            argv = [a for a in rest if a.startswith("experiment=")] + [f"framework={fw}"] + ([version] if version else []) \
                + [a for a in rest if not a.startswith("experiment=")]
            commands.append(argv)
    return {"commands": commands, "notes": notes}


def shell_line(argv: list[str]) -> str:
    return "python -m harness run " + " ".join(shlex.quote(a) for a in argv)


def _data_offline(job: dict[str, Any]) -> bool:
    """Whether the dataset can be prepared here without the network (shipped files, a path, the mirror)."""
    from harness.hub import mirror_root

    dataset = job.get("dataset") or {}
    return bool(dataset.get("path") or dataset.get("hub_id") is None or mirror_root() is not None)


def verify(commands: list[list[str]], records: list[Result]) -> dict[str, Any]:
    """Plan ``commands`` and compare with the runs: ``{state: verified|differs|not_checked, text, details}``."""
    from harness.cli.plan import plan_jobs

    recorded = {str(r.point_hash): r.job.to_dict() for r in records if r.has("job")}
    if not commands:
        return {"state": "not_checked", "text": "no command could be rebuilt from these records", "details": []}
    if not all(_data_offline(job) for job in recorded.values()):
        return {"state": "not_checked", "details": [],
                "text": "not checked here: the dataset is not available offline (set HARNESS_HUB_MIRROR); "
                        "`python -m harness plan ...` with the same arguments prints the point hashes to compare"}
    planned: dict[str, dict[str, Any]] = {}
    try:
        # What preparing the data prints (the detected format) is not the report's output: its stdout is
        # the report's path, which callers read.
        with contextlib.redirect_stdout(io.StringIO()):
            for argv in commands:
                for p in plan_jobs([a for a in argv if not a.startswith("-")], "-m" in argv):
                    planned[p["point_hash"]] = p
    except Exception as err:  # noqa: BLE001  (a plan that fails is the finding)
        return {"state": "differs", "details": [], "text": f"the command does not plan: {str(err).splitlines()[0]}"}
    missing = sorted(set(recorded) - set(planned))
    if not missing:
        return {"state": "verified", "details": [],
                "text": f"checked with `python -m harness plan`: the command plans the same "
                        f"{len(recorded)} sweep point hash{'es' if len(recorded) != 1 else ''} "
                        f"({', '.join(sorted(recorded))}) as these runs"}
    details = []
    for point in missing:
        diff = _closest(recorded[point], list(planned.values()))
        details.append({"point": point, "fields": [k for k, _, _ in diff],
                        "text": f"point {point}: " + "; ".join(f"{k} {a!r} in the runs, {b!r} today" for k, a, b in diff)})
    why = ""
    if all(not d["fields"] for d in details):
        why = (": every recorded setting is the same; the runs' point hash was computed by an earlier hashing rule "
               "(one that still counted a field now left out of the hash at its default)")
    elif all(d["fields"] == ["dataset.digest"] for d in details):
        why = (": every setting is the same, only the dataset digest differs (this checkout prepares different "
               "records from the dataset: the data preparation or the dataset files changed after these runs)")
    return {"state": "differs", "details": [d["text"] for d in details],
            "text": f"checked with `python -m harness plan`: {len(missing)} of {len(recorded)} sweep points plan "
                    f"differently today{why}"}


def _closest(job: dict[str, Any], planned: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
    """The leaves in which ``job`` differs from the most similar planned job (framework aside)."""
    from harness.config.job import DATASET_FIELD_DEFAULTS, TRAIN_FIELD_DEFAULTS

    # Fields added after a run, at the values that leave its hash (and its behaviour) as it was.
    neutral = {**{f"dataset.{k}": v for k, v in DATASET_FIELD_DEFAULTS.items()},
               **{f"train.{k}": v for k, v in TRAIN_FIELD_DEFAULTS.items()}, "dataset.format": None}
    mine = _flat(job)
    best: list[tuple[str, Any, Any]] | None = None
    for p in planned:
        theirs = {k: v for k, v in _flat(p["job"]).items()
                  if not (k not in mine and k in neutral and (v == neutral[k] or k == "dataset.format"))}
        diff = [(k, mine.get(k), theirs.get(k)) for k in sorted(set(mine) | set(theirs))
                if not k.startswith("framework.") and k != "model.path" and mine.get(k) != theirs.get(k)
                and not (k.startswith("launcher.") and k not in mine)]  # no launcher recorded: the default
        if best is None or len(diff) < len(best):
            best = diff
    return best or []


def reproduce_section(records: list[Result], given: str | None = None) -> dict[str, Any]:
    """What the report's Reproduce section shows: shell lines, argv lists (for tests), notes, verification."""
    built = build_commands(records)
    commits = sorted({str(r.env.git.commit) for r in records if r.env.git.commit})
    return {"lines": [shell_line(a) for a in built["commands"]], "argv": built["commands"], "notes": built["notes"],
            "given": given, "verify": verify(built["commands"], records), "commits": commits}

