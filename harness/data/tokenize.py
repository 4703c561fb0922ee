"""A record as the model sees it, the same for every framework and for our evaluator: its chat messages,
the turns that are supervised, and its tokens with response-only labels (chat template, right truncation).
Used by the worker (evaluation, the audit's truncation count) and by the adapters that feed tokens; plain
Python over a tokenizer, no torch."""
from __future__ import annotations

from typing import Any


IGNORE_INDEX = -100


def messages_for(record: dict[str, Any]) -> list[dict[str, str]]:
    """The chat for one prepared record. A conversation record (``{"messages": [...], "loss_on"}``, see
    ``harness.data.formats``) is its messages; an alpaca record is one user turn (instruction, then input on
    a new line when present) and the assistant's output. Every adapter builds its training data from this
    so the model sees the same text under every framework; a conversation without a system turn gets the
    chat template's default system prompt, one with a system turn replaces it."""
    if "messages" in record:
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in record["messages"]]
    user = str(record["instruction"])
    extra = record.get("input")
    if extra:
        user += "\n" + str(extra)
    return [{"role": "user", "content": user}, {"role": "assistant", "content": str(record["output"])}]


def supervised_turns(record: dict[str, Any]) -> list[int]:
    """Indices (into ``messages_for(record)``) of the assistant turns whose tokens are supervised:
    every assistant turn, or only the last one (``loss_on=last_assistant``)."""
    messages = messages_for(record)
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    return turns[-1:] if record.get("loss_on") == "last_assistant" else turns


def _ids(tokenizer, text: str) -> list[int]:
    # The chat template already wrote any BOS: do not let the tokenizer add a second one.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def tokenize_record(tokenizer, record: dict[str, Any], max_length: int) -> dict[str, Any]:
    """``{input_ids, labels, truncated}`` for one record: the full chat tokenised once, labels -100 except
    over the supervised assistant turns (``supervised_turns``), truncated on the right to ``max_length``.

    An assistant turn's tokens run from the end of the chat before it rendered with the generation prompt
    (the templated history including the assistant header) to the end of the chat up to and including it
    (its content and end-of-turn tokens), each bound the common prefix of that rendering's ids and the
    full chat's, which equals its length for templates whose earlier turns render as a prefix of the full
    text. These are the tokens LLaMA-Factory supervises per turn and trl's prompt/completion split does."""
    messages = messages_for(record)
    full_ids = _ids(tokenizer, tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False))
    labels = [IGNORE_INDEX] * len(full_ids)
    for turn in supervised_turns(record):
        prompt_text = tokenizer.apply_chat_template(messages[:turn], tokenize=False, add_generation_prompt=True)
        upto_text = tokenizer.apply_chat_template(messages[:turn + 1], tokenize=False, add_generation_prompt=False)
        start = _common_prefix(_ids(tokenizer, prompt_text), full_ids)
        end = _common_prefix(_ids(tokenizer, upto_text), full_ids) if turn + 1 < len(messages) else len(full_ids)
        labels[start:end] = full_ids[start:end]
    truncated = len(full_ids) > max_length
    return {"input_ids": full_ids[:max_length], "labels": labels[:max_length], "truncated": truncated}
