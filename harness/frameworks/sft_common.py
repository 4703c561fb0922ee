"""The trl SFT recipe shared by the trl and unsloth adapters (unsloth trains through trl's SFTTrainer).

Data goes in conversational, so the tokenizer's own chat template renders it, and only assistant tokens
are supervised (response-only loss), as in LLaMA-Factory with ``train_on_prompt: false``:

- alpaca records and conversations with ``loss_on=last_assistant``: prompt/completion pairs (the
  completion is the last assistant turn; the prompt every turn before it), supervised by trl's
  ``completion_only_loss``, as LLaMA-Factory's ``mask_history: true`` supervises the last turn.
- conversations with ``loss_on=all_assistant``: ``messages`` with ``assistant_only_loss``, which needs
  ``{% generation %}`` markers in the chat template. trl 1.16 swaps in its own Qwen2.5 training template
  when the tokenizer's has none, but that one marks the newline after ``<|im_start|>assistant`` as
  assistant output: one supervised token per turn more than LLaMA-Factory (and our evaluator), which
  count that newline as part of the prompt. We pass ``QWEN25_ASSISTANT_MASK_TEMPLATE`` instead: Qwen2.5's
  template with the markers around each turn's content and end-of-turn tokens, rendering the same text.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.data.dataset import read_split
from harness.frameworks.base import PAD_TO_MULTIPLE_OF, Job, training_arguments
from harness.hub import PACKAGE_ROOT
from harness.data.tokenize import IGNORE_INDEX, messages_for, tokenize_record

QWEN25_ASSISTANT_MASK_TEMPLATE = PACKAGE_ROOT / "assets" / "chat_templates" / "qwen2_5_assistant_mask.jinja"


def assistant_only(job: Job) -> bool:
    """Whether the job trains on every assistant turn of conversations (``messages`` + ``assistant_only_loss``)."""
    dataset = job.get("dataset") or {}
    return dataset.get("format") in ("sharegpt", "messages") and dataset.get("loss_on", "all_assistant") == "all_assistant"


def sft_config_args(job: Job) -> dict[str, Any]:
    """SFTConfig arguments: the shared Trainer arguments plus every trl default we must not inherit."""
    t = job["train"]
    args = training_arguments(job)
    args.update({
        "max_length": t["max_length"],
        "packing": t["packing"],
        "packing_strategy": "bfd",  # trl's default today; pinned so a new default cannot slip in
        # unsloth switches padding-free batching on by itself; trl's default may change too.
        "padding_free": bool(t["packing"]),
        "pad_to_multiple_of": PAD_TO_MULTIPLE_OF,
        "completion_only_loss": True,
        "assistant_only_loss": assistant_only(job),
        "loss_type": "nll",
        "truncation_mode": "keep_start",
        "shuffle_dataset": False,
        "activation_offloading": False,
        "use_liger_kernel": False,
        "average_tokens_across_devices": True,
    })
    if assistant_only(job):
        args["chat_template_path"] = str(QWEN25_ASSISTANT_MASK_TEMPLATE)
    return args


def lora_config_args(job: Job) -> dict[str, Any]:
    lora = job["train"]["lora"]
    return {
        "r": lora["r"],
        "lora_alpha": lora["alpha"],
        "lora_dropout": lora["dropout"],
        "target_modules": list(lora["targets"]),
        "bias": "none",
        "task_type": "CAUSAL_LM",
        "use_rslora": False,
        "use_dora": False,
    }


def conversation(record: dict[str, Any], *, all_assistant: bool = False) -> dict[str, Any]:
    messages = messages_for(record)
    if all_assistant:
        return {"messages": messages}
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def check_same_rendering(tokenizer: Any, records: list[dict[str, Any]]) -> None:
    """Refuse to train when the assistant-mask template would render any record differently from the
    model's own chat template (another model family): the tokens would no longer be the model's."""
    marked = Path(QWEN25_ASSISTANT_MASK_TEMPLATE).read_text(encoding="utf-8")
    for index, record in enumerate(records):
        messages = messages_for(record)
        own = tokenizer.apply_chat_template(messages, tokenize=False)
        if tokenizer.apply_chat_template(messages, tokenize=False, chat_template=marked) != own:
            raise RuntimeError(f"dataset.loss_on=all_assistant needs the Qwen2.5 chat template (prepared record "
                               f"{index} renders differently under {QWEN25_ASSISTANT_MASK_TEMPLATE.name}); "
                               "use dataset.loss_on=last_assistant for this model")


def load_split(job: Job, split: str, tokenizer: Any = None):
    """The prepared records as a ``datasets.Dataset`` of conversations (prompt/completion or messages)."""
    from datasets import Dataset

    records = read_split(job["runtime"]["data_dir"], split)
    if assistant_only(job) and tokenizer is not None:
        check_same_rendering(tokenizer, records)
    return Dataset.from_list([conversation(r, all_assistant=assistant_only(job)) for r in records])


def load_pretruncated_split(job: Job, split: str, tokenizer: Any) -> Any:
    """The prepared records as tokens and labels (``harness.data.tokenize.tokenize_record``, cut at
    ``train.max_length``): for padding-free batching, which trl 1.16 runs only on inputs already truncated
    (``max_length=None``). Records left with no supervised token are dropped, as trl drops them after its
    own truncation, so the same records are trained on."""
    from datasets import Dataset

    rows = []
    for record in read_split(job["runtime"]["data_dir"], split):
        tokens = tokenize_record(tokenizer, record, job["train"]["max_length"])
        if any(label != IGNORE_INDEX for label in tokens["labels"]):
            rows.append({"input_ids": tokens["input_ids"], "labels": tokens["labels"]})
    return Dataset.from_list(rows)
