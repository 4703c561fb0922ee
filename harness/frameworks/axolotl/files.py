"""The files axolotl reads: the prepared splits as ``messages`` jsonl, and the YAML config of the job."""
from __future__ import annotations

import json
from pathlib import Path

from harness.frameworks.axolotl.config import TRAIN_FLAG, data_files, native_args
from harness.frameworks.base import Job

CONFIG_FILE = "axolotl_config.yaml"


def write_data(job: Job) -> None:
    """The prepared splits as ``messages`` records (``messages_for``, the chat every adapter trains on), each turn
    flagged with whether it is supervised (``supervised_turns``: every assistant turn, or the last one)."""
    from harness.data.dataset import read_split
    from harness.data.tokenize import messages_for, supervised_turns

    for split, path in data_files(job).items():
        lines = []
        for record in read_split(job["runtime"]["data_dir"], split):
            trained = set(supervised_turns(record))
            messages = [{**m, TRAIN_FLAG: i in trained} for i, m in enumerate(messages_for(record))]
            lines.append(json.dumps({"messages": messages}, ensure_ascii=False))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_config(job: Job) -> Path:
    """``RUN_DIR/axolotl_config.yaml``: ``native_args(job)``, the file ``axolotl train`` would be given."""
    import yaml

    path = Path(job["runtime"]["run_dir"]) / CONFIG_FILE
    path.write_text(yaml.safe_dump(native_args(job), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
