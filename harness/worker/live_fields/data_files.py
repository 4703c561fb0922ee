"""The prepared data files of the run (``job.runtime.data_dir``) hashed and tokenised with the live
tokenizer: eval/train set hashes and how many records the framework's truncation cut."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from harness.worker.live_fields.values import attr_path, file_sha256


def read_data_files(job: dict[str, Any], live: Any, out: dict[str, Any], notes: list[str], truncation: str | None) -> None:
    data_dir = Path(str(((job or {}).get("runtime") or {}).get("data_dir") or ""))
    out["eval_set_hash"] = file_sha256(data_dir / "eval.jsonl") if str(data_dir) else None
    out["train_set_hash"] = file_sha256(data_dir / "train.jsonl") if str(data_dir) else None
    if out["eval_set_hash"] is None:
        notes.append(f"eval.jsonl not readable in {data_dir}")
    out["truncation_strategy"] = truncation
    tokenizer, max_length = live.tokenizer, out.get("max_length")
    if max_length is None and isinstance(((job or {}).get("train") or {}).get("max_length"), int):
        # No length on the framework's objects: inputs cut before the framework saw them (trl's padding-free
        # batching in the recommended recipe), at the job's max_length (truncation_strategy says who cut).
        max_length = job["train"]["max_length"]
        notes.append(f"records_truncated counted against train.max_length={max_length}: no max_length on the live objects")
    out["records_truncated"] = out["records_total"] = out["records_max_tokens"] = None
    template = attr_path(tokenizer, "chat_template")
    out["chat_template_hash"] = hashlib.sha256(template.encode()).hexdigest() if isinstance(template, str) else None
    out["pad_token_id"] = attr_path(tokenizer, "pad_token_id")
    out["eos_token_id"] = attr_path(tokenizer, "eos_token_id")
    if tokenizer is None or not isinstance(max_length, int) or out["train_set_hash"] is None:
        notes.append("records_truncated not computed (needs the live tokenizer, max_length and train.jsonl)")
        return
    try:
        from harness.data.tokenize import tokenize_record  # the evaluator's own chat tokenisation
    except Exception:  # noqa: BLE001
        tokenize_record = None
    records = [json.loads(line) for line in (data_dir / "train.jsonl").read_text(encoding="utf-8").splitlines()
               if line.strip()]
    lengths = [_record_length(tokenizer, r, max_length, tokenize_record) for r in records]
    known = [n for n in lengths if n is not None]
    if len(known) != len(lengths):
        notes.append(f"records_truncated: {len(lengths) - len(known)} records could not be tokenised")
    out["records_total"] = len(records)
    out["records_truncated"] = sum(1 for n in known if n > max_length)
    out["records_max_tokens"] = max(known) if known else None
    out["records_tokenised_with"] = ("harness.data.tokenize.tokenize_record" if tokenize_record
                                     else "tokenizer.apply_chat_template")


def _record_length(tokenizer: Any, record: dict[str, Any], max_length: int, tokenize_record: Callable | None) -> int | None:
    """Untruncated token count of one record rendered with the chat template."""
    try:
        if tokenize_record is not None:
            full = tokenize_record(tokenizer, record, 1 << 30)
            return len(full["input_ids"])
        user = str(record["instruction"]) + ("\n" + str(record["input"]) if record.get("input") else "")
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": str(record["output"])}]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])
    except Exception:  # noqa: BLE001
        return None
