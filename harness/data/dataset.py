"""Dataset records: load, validate and split them once, in the parent, before anything trains.

A dataset is a local file (``dataset.path``, or ``train_file``/``eval_file`` in the repository or inside a
Hub dataset repo) or a Hub dataset loaded through ``datasets.load_dataset`` (``dataset.hub_id`` without
``train_file``; ``dataset.config`` / ``dataset.split``). Its records are alpaca, ShareGPT or OpenAI
messages (``dataset.format``, detected from the first record by default; see ``harness.data.formats``).
Every framework then reads the same two prepared files (``train.jsonl``, ``eval.jsonl``), so the records
and their order are identical by construction; the worker's audit proves the tokens are too.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.schema import ConfigError
from harness.data.formats import EXPECTED, detect, to_record
from harness.hub import mirror_root, resolve_dataset_file, REPO_ROOT

Record = dict[str, Any]
_FILE_KINDS = f"a JSON array or JSON lines of {EXPECTED} records"
# Formats we are asked for that a JSON reader cannot take: said plainly instead of 'malformed JSON'.
_NOT_JSON = {".csv": "CSV", ".tsv": "TSV", ".parquet": "Parquet", ".arrow": "Arrow"}
_said: set[tuple[str, str]] = set()  # (source, format) already announced by this process


@dataclass(frozen=True)
class PreparedData:
    train: list[Record]
    eval: list[Record]
    source: str
    format: str = "alpaca"

    @property
    def digest(self) -> str:
        blob = json.dumps([self.train, self.eval], ensure_ascii=False, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _parse(path: Path) -> tuple[list[Any], list[int | None]]:
    """The rows of ``path`` and, for JSON lines, the line each came from (None inside a JSON array)."""
    kind = _NOT_JSON.get(path.suffix.lower())
    if kind is not None:
        raise ConfigError(f"{path}: {kind} is not a supported dataset format: expected {_FILE_KINDS}")
    try:
        # utf-8-sig: a byte-order mark (Windows editors, Excel exports) is read as UTF-8, not refused.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}): expected {_FILE_KINDS}") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the dataset file: {err.strerror or err}") from None
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg} "
                              f"(expected {_FILE_KINDS})") from None
        return rows, [None] * len(rows)
    rows, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: malformed JSON on line {number}, column {err.colno}: {err.msg} "
                              f"(expected {_FILE_KINDS})") from None
        lines.append(number)
    return rows, lines


def records_from_rows(rows: list[Any], lines: list[int | None], source: str, fmt: str = "auto",
                      loss_on: str = "all_assistant", *, set_by: str = "dataset.format") -> tuple[list[Record], str]:
    """Validate parsed rows as ``fmt`` (``auto``: the first row's format); return the records and the format.

    ``set_by`` names what fixed an explicit ``fmt``, for the mixed-formats error."""
    if not rows:
        raise ConfigError(f"{source}: dataset is empty")

    def record(index: int) -> str:
        line = lines[index] if index < len(lines) else None
        return f"record {index}" + (f" (line {line})" if line is not None else "")

    def where(index: int) -> str:
        return f"{source}: {record(index)}"

    if fmt == "auto":
        fmt, first = detect(rows[0], where(0)), record(0)
    else:
        first = set_by
    records = [to_record(row, fmt, where(i), loss_on, first_where=first) for i, row in enumerate(rows)]
    return records, fmt


def read_dataset(path: Path, fmt: str = "auto", loss_on: str = "all_assistant", *,
                 set_by: str = "dataset.format") -> tuple[list[Record], str]:
    """Read a JSON array or JSON-lines file of ``fmt`` records; refuse the first bad record in one line."""
    if path.is_dir():
        raise ConfigError(f"dataset file {path} is a directory, not a JSON or JSON-lines file")
    if not path.is_file():
        raise ConfigError(f"dataset file not found: {path}")
    rows, lines = _parse(path)
    return records_from_rows(rows, lines, str(path), fmt, loss_on, set_by=set_by)


def load_records(path: Path, fmt: str = "auto", loss_on: str = "all_assistant") -> list[Record]:
    return read_dataset(path, fmt, loss_on)[0]


def hub_rows(hub_id: str, config: str | None, split: str) -> tuple[list[Any], str]:
    """The rows of one split of a Hub dataset via ``datasets.load_dataset``, from the offline mirror when set."""
    mirror = mirror_root()
    source: str = hub_id
    if mirror is not None:
        folder = mirror / "datasets" / hub_id
        if not folder.is_dir():
            raise ConfigError(f"dataset.hub_id: {hub_id} is not in the offline mirror {mirror}")
        source = str(folder)
    else:
        from harness.hub import go_offline_unless_reachable

        go_offline_unless_reachable()  # before datasets imports huggingface_hub and reads its offline flag
    try:
        import datasets  # parent-side, only for Hub datasets; it does not import torch
    except ImportError:
        raise ConfigError("dataset.hub_id: loading a Hub dataset needs the 'datasets' package "
                          "(pip install -r envs/base.txt)") from None
    # Its progress bars and warnings would break the one-line error contract of a refused run.
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    label = f"{hub_id}" + (f" config {config!r}" if config else "") + f" split {split!r}"
    try:
        rows = datasets.load_dataset(source, config, split=split).to_list()
    except Exception as err:  # unknown id/config/split, no network, unreadable files: one line naming them
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"dataset.hub_id: cannot load {label} ({type(err).__name__}: {reason[:300]})") from None
    return rows, label


def _dataset_path(dataset: Any, which: str) -> Path | None:
    """Where the train or eval file of ``dataset`` lives: dataset.path, the mirror, or the Hub."""
    if dataset.path:
        return Path(dataset.path).expanduser().resolve() if which == "train" else None
    filename = dataset.train_file if which == "train" else dataset.eval_file
    if filename is None:
        return None
    if dataset.hub_id is None:  # files shipped with the repository
        return (REPO_ROOT / filename).resolve()
    if mirror_root() is not None:
        filename = getattr(dataset, f"mirror_{which}_file", None) or filename
    return resolve_dataset_file(dataset.hub_id, filename)


def _load(dataset: Any, which: str, fmt: str, loss_on: str, set_by: str) -> tuple[list[Record], str, str] | None:
    """(records, format, source) of the train or eval part of ``dataset``; None for an eval part it lacks."""
    if not dataset.path and dataset.hub_id and not dataset.train_file:  # a Hub dataset through load_dataset
        split = _get(dataset, "split", "train") if which == "train" else _get(dataset, "eval_split", None)
        if split is None:
            return None
        rows, label = hub_rows(dataset.hub_id, _get(dataset, "config", None), split)
        records, found = records_from_rows(rows, [], label, fmt, loss_on, set_by=set_by)
        return records, found, label
    path = _dataset_path(dataset, which)
    if path is None:
        return None
    records, found = read_dataset(path, fmt, loss_on, set_by=set_by)
    return records, found, str(path)


def _announce(dataset: Any, source: str, fmt: str) -> None:
    if _get(dataset, "format", "auto") == "auto" and (source, fmt) not in _said:
        _said.add((source, fmt))
        print(f"dataset: {source}: detected {fmt} format from record 0 (dataset.format={fmt} pins it)", flush=True)


def _get(dataset: Any, name: str, default: Any) -> Any:
    value = getattr(dataset, name, default) if not hasattr(dataset, "get") else dataset.get(name, default)
    return default if value is None else value


def prepare(dataset: Any) -> PreparedData:
    """Load and split ``dataset`` (a DatasetConfig); the held-out set never overlaps the train set."""
    fmt, loss_on = _get(dataset, "format", "auto"), _get(dataset, "loss_on", "all_assistant")
    loaded = _load(dataset, "train", fmt, loss_on, "dataset.format")
    if loaded is None:
        raise ConfigError(f"dataset {dataset.name!r} has no training data: set dataset.path=FILE, "
                          "dataset.train_file or dataset.hub_id")
    train, fmt_found, train_source = loaded
    _announce(dataset, train_source, fmt_found)
    # The eval part must be in the train part's format (detected or pinned).
    held = _load(dataset, "eval", fmt_found, loss_on,
                 "dataset.format" if fmt != "auto" else f"the train set ({train_source})")
    # More held-out records than the data has is refused, never capped (preflight and plan prepare every
    # job's data before anything runs, so this is their check too).
    if held is not None:
        held_out, _, eval_source = held
        if dataset.num_eval > len(held_out):
            raise ConfigError(f"dataset.num_eval={dataset.num_eval}: the eval split ({eval_source}) has only "
                              f"{len(held_out)} records")
        held_out = held_out[: dataset.num_eval]
    else:
        if dataset.num_eval >= len(train):
            raise ConfigError(f"dataset.num_eval={dataset.num_eval}: {train_source} has only {len(train)} records "
                              f"(at most {len(train) - 1} can be held out)")
        held_out, train = train[-dataset.num_eval:], train[: -dataset.num_eval]
    # A record present in both would measure memorisation, not held-out loss.
    seen = {json.dumps(r, sort_keys=True, ensure_ascii=False) for r in train}
    held_out = [r for r in held_out if json.dumps(r, sort_keys=True, ensure_ascii=False) not in seen]
    if not held_out:
        source = f"eval file {eval_source}" if held is not None else f"the last {dataset.num_eval} records of {train_source}"
        raise ConfigError(f"dataset.num_eval: eval set of {dataset.name!r} is empty after removing records that are also in train ({source})")
    if dataset.num_train is not None:
        train = train[: dataset.num_train]
    if not train:
        raise ConfigError(f"dataset {dataset.name!r}: no training records left after the eval split")
    return PreparedData(train=train, eval=held_out, source=train_source, format=fmt_found)


def read_split(data_dir: str | Path, split: str) -> list[Record]:
    """The prepared ``train`` or ``eval`` records of a run, as every framework reads them."""
    path = Path(data_dir) / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, records: list[Record]) -> None:
    from harness.atomic import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
