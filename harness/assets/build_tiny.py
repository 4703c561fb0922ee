"""Rebuild the embedded tiny model assets in ``harness/assets/tiny/``.

Run ``python -m harness.assets.build_tiny``. From ``medical_train.jsonl`` it
deterministically writes:

* ``tokenizer.json`` - byte-level BPE (Qwen2 pre-tokenizer split regex), trained
  with the HF ``tokenizers`` library on the chat-rendered training records, then
  extended with the special tokens ``<|endoftext|>``, ``<|im_start|>`` and
  ``<|im_end|>`` (appended last, as in Qwen2);
* ``tokenizer_config.json`` / ``special_tokens_map.json`` - Qwen2-style
  settings with the Qwen2.5-Instruct chat template (``CHAT_TEMPLATE`` below,
  copied verbatim from ``Qwen/Qwen2.5-0.5B-Instruct``);
* ``config.json`` / ``generation_config.json`` - a ~0.2M-parameter
  ``Qwen2ForCausalLM`` whose vocab size is ``len(tokenizer)`` rounded up to 64.

Only ``tokenizers`` is needed (no ``transformers``, no network).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

TINY_DIR = Path(__file__).resolve().parent / "tiny"
BPE_VOCAB_SIZE = 1600  # target before the 3 special tokens (256 bytes + merges)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SYSTEM_PROMPT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
# Qwen2 pre-tokenizer split pattern.
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Verbatim chat_template of Qwen/Qwen2.5-0.5B-Instruct/tokenizer_config.json.
CHAT_TEMPLATE = (
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"
)


def load_records(path: Path) -> list[dict[str, str]]:
    """Read an alpaca-style jsonl file (instruction/input/output)."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def training_texts(records: list[dict[str, str]]) -> Iterator[str]:
    """Chat-template segments between special tokens, as the model will see them."""
    for rec in records:
        user = rec["instruction"] + (("\n" + rec["input"]) if rec.get("input") else "")
        yield f"system\n{SYSTEM_PROMPT}"
        yield "\n"
        yield f"user\n{user}"
        yield f"assistant\n{rec['output']}"


def train_tokenizer(records: list[dict[str, str]]) -> Tokenizer:
    """Train a Qwen2-style byte-level BPE tokenizer and append the special tokens."""
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(training_texts(records), trainer=trainer)
    tok.add_special_tokens(SPECIAL_TOKENS)
    return tok


def tokenizer_config(tok: Tokenizer) -> dict[str, Any]:
    """Qwen2.5-Instruct style tokenizer_config.json for the tiny tokenizer."""
    added = {
        str(tok.token_to_id(t)): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t in SPECIAL_TOKENS
    }
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 2048,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def model_config(tok: Tokenizer) -> tuple[dict[str, Any], dict[str, Any]]:
    """Tiny Qwen2ForCausalLM config.json and generation_config.json (Qwen2.5-Instruct fields)."""
    vocab = -(-tok.get_vocab_size(with_added_tokens=True) // 64) * 64
    eot, im_end = tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|im_end|>")
    config: dict[str, Any] = {
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": eot,
        "eos_token_id": im_end,
        "pad_token_id": eot,
        "hidden_act": "silu",
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 172,
        "max_position_embeddings": 2048,
        "max_window_layers": 2,
        "model_type": "qwen2",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 2048,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab,
    }
    generation: dict[str, Any] = {
        "bos_token_id": eot,
        "pad_token_id": eot,
        "do_sample": True,
        "eos_token_id": [im_end, eot],
        "repetition_penalty": 1.1,
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
    }
    return config, generation


def write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def build(out_dir: Path = TINY_DIR) -> Tokenizer:
    """Rebuild all derived assets in ``out_dir`` from its ``medical_train.jsonl``."""
    tok = train_tokenizer(load_records(out_dir / "medical_train.jsonl"))
    tok.save(str(out_dir / "tokenizer.json"), pretty=True)
    write_json(out_dir / "tokenizer_config.json", tokenizer_config(tok))
    write_json(
        out_dir / "special_tokens_map.json",
        {
            "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
        },
    )
    config, generation = model_config(tok)
    write_json(out_dir / "config.json", config)
    write_json(out_dir / "generation_config.json", generation)
    return tok


def main() -> None:
    tok = build()
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    print(f"wrote {TINY_DIR}: vocab={tok.get_vocab_size(with_added_tokens=True)} special={ids}")


if __name__ == "__main__":
    main()
