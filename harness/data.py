"""Alpaca records: load, validate and split them once, in the parent, before anything trains.

Every framework then reads the same two prepared files (``train.jsonl``, ``eval.jsonl``), so the
records and their order are identical by construction; the worker's audit proves the tokens are too.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import ConfigError
from harness.hub import mirror_root, resolve_dataset_file, REPO_ROOT

REQUIRED_FIELDS = ("instruction", "output")
Record = dict[str, str]


@dataclass(frozen=True)
class PreparedData:
    train: list[Record]
    eval: list[Record]
    source: str

    @property
    def digest(self) -> str:
        blob = json.dumps([self.train, self.eval], ensure_ascii=False, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _parse(path: Path) -> tuple[list[Any], list[int | None]]:
    """The rows of ``path`` and, for JSON lines, the line each came from (None inside a JSON array)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}): expected alpaca JSON or JSON lines") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the dataset file: {err.strerror or err}") from None
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: malformed JSON at line {err.lineno}: {err.msg}") from None
        return rows, [None] * len(rows)
    rows, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: malformed JSON on line {number}: {err.msg}") from None
        lines.append(number)
    return rows, lines


def load_records(path: Path) -> list[Record]:
    """Read an alpaca JSON array or JSON-lines file; refuse a record without instruction or output."""
    if path.is_dir():
        raise ConfigError(f"dataset file {path} is a directory, not a JSON or JSON-lines file")
    if not path.is_file():
        raise ConfigError(f"dataset file not found: {path}")
    rows, lines = _parse(path)
    if not rows:
        raise ConfigError(f"{path}: dataset is empty")
    records: list[Record] = []
    for index, (row, line) in enumerate(zip(rows, lines)):
        where = f"record {index}" + (f" (line {line})" if line is not None else "")
        if not isinstance(row, dict):
            raise ConfigError(f"{path}: {where} is not a JSON object")
        for name in REQUIRED_FIELDS:
            if not isinstance(row.get(name), str) or not row[name].strip():
                raise ConfigError(f"{path}: {where} has no '{name}'")
        # Whitespace at either end of a field is stripped: frameworks that tokenize prompt and response
        # separately (LLaMA-Factory) and those that tokenize the rendered conversation at once (trl)
        # merge it into different tokens (train record 27 of shibing624/medical answers " \n...").
        records.append({"instruction": row["instruction"].strip(), "input": str(row.get("input") or "").strip(),
                        "output": row["output"].strip()})
    return records


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


def prepare(dataset: Any) -> PreparedData:
    """Load and split ``dataset`` (a DatasetConfig); the held-out set never overlaps the train set."""
    train_path = _dataset_path(dataset, "train")
    assert train_path is not None
    train = load_records(train_path)
    eval_path = _dataset_path(dataset, "eval")
    if eval_path is not None:
        held_out = load_records(eval_path)[: dataset.num_eval]
    else:
        held_out, train = train[-dataset.num_eval:], train[: -dataset.num_eval]
    # A record present in both would measure memorisation, not held-out loss.
    seen = {json.dumps(r, sort_keys=True, ensure_ascii=False) for r in train}
    held_out = [r for r in held_out if json.dumps(r, sort_keys=True, ensure_ascii=False) not in seen]
    if not held_out:
        source = f"eval file {eval_path}" if eval_path is not None else f"the last {dataset.num_eval} records of {train_path}"
        raise ConfigError(f"dataset.num_eval: eval set of {dataset.name!r} is empty after removing records that are also in train ({source})")
    if dataset.num_train is not None:
        train = train[: dataset.num_train]
    if not train:
        raise ConfigError(f"dataset {dataset.name!r}: no training records left after the eval split")
    return PreparedData(train=train, eval=held_out, source=str(train_path))


def read_split(data_dir: str | Path, split: str) -> list[Record]:
    """The prepared ``train`` or ``eval`` records of a run, as every framework reads them."""
    path = Path(data_dir) / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, records: list[Record]) -> None:
    from harness.atomic import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
