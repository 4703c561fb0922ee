"""Dataset record formats: alpaca, ShareGPT and OpenAI messages, read into the harness's two record kinds.

- alpaca ``{"instruction", "input"?, "output"}`` stays an alpaca record (stripped), so an alpaca dataset's
  prepared files, data digest and job hash are what they were before conversations existed.
- ShareGPT ``{"conversations": [{"from": "human"|"gpt"|"system", "value"}]}`` (an optional top-level
  ``"system"`` too, as LLaMA-Factory reads it) and OpenAI messages ``{"messages": [{"role":
  "user"|"assistant"|"system", "content"}]}`` become one conversation form,
  ``{"messages": [{"role": "system"|"user"|"assistant", "content"}], "loss_on": ...}``, which every adapter
  and the evaluator read (``harness.data.tokenize.messages_for``).

A conversation is what every framework can train identically: an optional system turn first, then user and
assistant turns alternating, ending with an assistant turn, no empty turn. LLaMA-Factory silently drops a
conversation that breaks the alternation, and a system turn elsewhere renders differently in its template
and in the tokenizer's, so such records are refused here, naming file, record, line and turn.
"""
from __future__ import annotations

from typing import Any

from harness.config.schema import ConfigError

FORMATS = ("alpaca", "sharegpt", "messages")
DATASET_FORMATS = ("auto", *FORMATS)
# Which assistant turns of a conversation are supervised; alpaca records have one, so both are the same there.
LOSS_ON = ("all_assistant", "last_assistant")
EXPECTED = ("alpaca {instruction, input, output}, sharegpt {conversations: [{from, value}]} "
            "or messages {messages: [{role, content}]}")

# ShareGPT dumps use human/gpt; some write user/assistant under from/value: both mean the same turns.
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system"}
_MESSAGES_ROLES = {"user": "user", "assistant": "assistant", "system": "system"}
_TURN_KEYS = {"sharegpt": ("from", "value", _SHAREGPT_ROLES), "messages": ("role", "content", _MESSAGES_ROLES)}
_LIST_KEYS = ("conversations", "messages")


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for 'is a number, expected a string'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def _turn_list(row: dict[str, Any]) -> tuple[str, Any] | None:
    for key in _LIST_KEYS:
        if row.get(key) is not None:
            return key, row[key]
    return None


def format_of(row: Any) -> str | None:
    """The format one record is written in, or None when it looks like none of them.

    Keys holding null count as absent: rows loaded through ``datasets`` carry every column of the file."""
    if not isinstance(row, dict):
        return None
    turns = _turn_list(row)
    if turns is not None:
        first = next((t for t in turns[1] if isinstance(t, dict)), None) if isinstance(turns[1], list) else None
        if first is not None and ("from" in first or "value" in first):
            return "sharegpt"
        if first is not None and ("role" in first or "content" in first):
            return "messages"
        return "sharegpt" if turns[0] == "conversations" else "messages"
    if row.get("instruction") is not None or row.get("output") is not None:
        return "alpaca"
    return None


def detect(row: Any, where: str) -> str:
    """The format of the first record (``dataset.format=auto``); refuse one that matches none."""
    found = format_of(row)
    if found is None:
        kind = json_type(row)
        keys = (f"its keys: {', '.join(map(str, row))}" if isinstance(row, dict) and row
                else f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}")
        raise ConfigError(f"{where} is in no format this harness reads ({keys}): expected {EXPECTED}")
    return found


def _string(value: Any, name: str, where: str) -> str:
    if value is None:
        raise ConfigError(f"{where} has no '{name}'")
    if not isinstance(value, str):
        raise ConfigError(f"{where}: '{name}' is a {json_type(value)}, expected a string")
    # Whitespace at either end is stripped: frameworks that tokenize prompt and response separately
    # (LLaMA-Factory) and those that tokenize the rendered conversation at once (trl) merge it into
    # different tokens (train record 27 of shibing624/medical answers " \n...").
    return value.strip()


def alpaca_record(row: dict[str, Any], where: str) -> dict[str, str]:
    fields = {}
    for name in ("instruction", "output"):
        fields[name] = _string(row.get(name), name, where)
        if not fields[name]:
            raise ConfigError(f"{where}: '{name}' is empty")
    extra = row.get("input")
    fields["input"] = "" if extra is None else _string(extra, "input", where)
    return {"instruction": fields["instruction"], "input": fields["input"], "output": fields["output"]}


def _turns(row: dict[str, Any], fmt: str, where: str) -> list[dict[str, str]]:
    role_key, content_key, roles = _TURN_KEYS[fmt]
    found = _turn_list(row)
    if found is None:
        raise ConfigError(f"{where} has no 'conversations' or 'messages' list")
    list_key, turns = found
    if not isinstance(turns, list):
        raise ConfigError(f"{where}: '{list_key}' is a {json_type(turns)}, expected a list of turns")
    if not turns:
        raise ConfigError(f"{where}: '{list_key}' is empty")
    messages = []
    for i, turn in enumerate(turns):
        at = f"{where}, turn {i}"
        if not isinstance(turn, dict):
            raise ConfigError(f"{at} is a {json_type(turn)}, expected an object with '{role_key}' and '{content_key}'")
        role = turn.get(role_key)
        if role is None:
            raise ConfigError(f"{at} has no '{role_key}' ({fmt} turns are {{{role_key}, {content_key}}})")
        if role not in roles:
            raise ConfigError(f"{at}: unknown role {role!r} (expected one of: {', '.join(roles)})")
        content = _string(turn.get(content_key), content_key, at)
        if not content:
            raise ConfigError(f"{at} ({role}) is empty")
        messages.append({"role": roles[role], "content": content, "given": role})
    system = row.get("system") if fmt == "sharegpt" else None
    if system is not None and system != "":
        if messages[0]["role"] == "system":
            raise ConfigError(f"{where} has both a 'system' field and a system turn")
        messages.insert(0, {"role": "system", "content": _string(system, "system", where), "given": "system field"})
        if not messages[0]["content"]:
            raise ConfigError(f"{where}: 'system' is empty")
    return messages


def _check_order(messages: list[dict[str, str]], where: str) -> None:
    offset = 1 if messages[0]["role"] == "system" else 0
    body = messages[offset:]
    if not body:
        raise ConfigError(f"{where} has only a system turn: expected user and assistant turns after it")
    for j, message in enumerate(body):
        turn = f"{where}, turn {j + offset - (1 if messages[0]['given'] == 'system field' else 0)}"
        if message["role"] == "system":
            raise ConfigError(f"{turn} is a system turn: only the first turn may be one")
        expected = "user" if j % 2 == 0 else "assistant"
        if message["role"] != expected:
            raise ConfigError(f"{turn} is {message['given']!r} where a {expected} turn belongs: turns alternate "
                              "user, assistant (after an optional system turn)")
    if body[-1]["role"] != "assistant":
        raise ConfigError(f"{where} does not end with an assistant turn (the last is {body[-1]['given']!r}): "
                          "nothing to train on after it")


def conversation_record(row: dict[str, Any], fmt: str, where: str, loss_on: str) -> dict[str, Any]:
    messages = _turns(row, fmt, where)
    _check_order(messages, where)
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages], "loss_on": loss_on}


def to_record(row: Any, fmt: str, where: str, loss_on: str, *, first_where: str) -> dict[str, Any]:
    """One validated record of a ``fmt`` dataset; refuses a record of another format (mixed formats)."""
    if not isinstance(row, dict):
        raise ConfigError(f"{where} is a {json_type(row)}, not a JSON object")
    found = format_of(row)
    if found is not None and found != fmt:
        article = "an" if found == "alpaca" else "a"
        if first_where.startswith("dataset.format"):  # the user's own setting, not another record
            raise ConfigError(f"{where} is {article} {found} record, but {first_where} asks for {fmt} (leave "
                              f"dataset.format out to detect it, or give every record as {fmt})")
        raise ConfigError(f"{where} is {article} {found} record but {first_where} is {fmt}: mixed formats in one "
                          f"dataset (expected every record as {fmt})")
    if fmt == "alpaca":
        return alpaca_record(row, where)
    return conversation_record(row, fmt, where, loss_on)


def is_conversation(record: dict[str, Any]) -> bool:
    return "messages" in record
