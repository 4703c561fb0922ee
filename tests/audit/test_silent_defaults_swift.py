"""ms-swift's silent defaults: one test per default the adapter pins, each failing if it stops pinning it.

Every check runs under the ms-swift environment (``.envs/swift-4.6.0``) through ms-swift's own argument
parsing (``SftArguments(**native_args(job))``, whose ``__post_init__`` resolves its defaults), its own
template (``args.get_template``) and its own dataset loader, as ``SwiftSft`` does. The snippet runs once per
job, each job a probe of the swift environment (``tests/helpers/framework_env.py``: one interpreter for all of
them). Each default is named with the file of ms-swift 4.6.0 that holds it.
"""
from __future__ import annotations

import json

import pytest

from tests.helpers.framework_env import PROBES, SWIFT
from tests.helpers.jobs import make_job

SWIFT_PROBES = PROBES[SWIFT]

# Resolve SftArguments, its Trainer arguments and its template; encode records with the template and with
# our evaluator (the tokens and labels every other framework trains on); load the data as SwiftSft does.
_RESOLVE = """
from harness.frameworks import swift as adapter
from harness.data.tokenize import messages_for, tokenize_record
from swift.arguments import SftArguments

args = SftArguments(**adapter.native_args(job))
ta = args.training_args
_, tokenizer = args.get_model_processor(load_model=False)
template = args.get_template(tokenizer)
template.set_mode("train")


def encoded(record):
    enc = template.encode({"messages": messages_for(record)})
    ref = tokenize_record(tokenizer, record, template.max_length)
    return {"ids": enc["input_ids"], "labels": enc["labels"], "ref_ids": ref["input_ids"], "ref_labels": ref["labels"]}


def value(v):
    return getattr(v, "value", v)


trainer_fields = ["weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "lr_scheduler_type", "warmup_steps",
                  "warmup_ratio", "learning_rate", "optim", "gradient_accumulation_steps",
                  "per_device_train_batch_size", "per_device_eval_batch_size", "dataloader_num_workers",
                  "report_to", "fp16", "bf16", "seed", "data_seed", "train_dataloader_shuffle", "group_by_length",
                  "use_logits_to_keep", "gradient_checkpointing", "gradient_checkpointing_kwargs", "loss_type",
                  "enable_dft_loss", "enable_channel_loss", "use_liger_kernel", "max_grad_norm", "output_dir",
                  "check_model", "optimizer", "callbacks", "max_steps"]
result = {
    "trainer": {k: value(getattr(ta, k)) for k in trainer_fields},
    "args": {k: value(getattr(args, k)) for k in ["lora_rank", "lora_alpha", "lora_dropout", "target_modules",
             "lora_bias", "lora_dtype", "use_rslora", "use_dora", "init_weights", "modules_to_save", "tuner_type",
             "tuner_backend", "use_swift_lora", "dataset_shuffle", "val_dataset_shuffle", "split_dataset_ratio",
             "strict", "truncation_strategy", "max_length", "loss_scale", "template", "packing", "padding_free",
             "device_map", "torch_dtype", "model_type", "lazy_tokenize", "add_version"]},
    "template": {"class": type(template).__name__, "max_length": template.max_length,
                 "truncation_strategy": template.truncation_strategy, "padding_side": template.padding_side,
                 "default_system": template.template_meta.default_system,
                 "loss_scale": type(template.loss_scale).__name__,
                 "base_strategy": getattr(template.loss_scale, "base_strategy", None)},
    "quantization": None,
}
quant = args.get_quantization_config()
if quant is not None:
    result["quantization"] = {k: str(getattr(quant, k)) for k in ["load_in_4bit", "bnb_4bit_quant_type",
                              "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype"]}
records = json.loads(job["runtime"]["records"])
result["encoded"] = [encoded(r) for r in records]

collate = adapter.PadToMultiple(template)
batch = [template.encode({"messages": messages_for(r)}) for r in records[:2]]
padded = collate(batch)
result["collated"] = {"shape": list(padded["input_ids"].shape), "lengths": [len(b["input_ids"]) for b in batch],
                      "pad_labels": padded["labels"][1, len(batch[1]["input_ids"]):].tolist(),
                      "pad_ids": padded["input_ids"][1, len(batch[1]["input_ids"]):].tolist(),
                      "pad_token_id": tokenizer.pad_token_id}
if job["runtime"].get("load_data"):
    adapter.write_data(job)
    train_set, eval_set = args.load_dataset()
    result["loaded"] = {"train": [row["messages"] for row in train_set], "eval": [row["messages"] for row in eval_set]}
"""

RECORDS = [
    {"instruction": "Sore throat?", "input": "", "output": "Warm fluids.\n\nRest."},
    {"instruction": "Translate", "input": "bonjour", "output": "hello"},
    {"instruction": "List three fruits " * 6, "input": "", "output": "apple, pear, plum " * 40},
]
CONVERSATION = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi\nthere"},
                             {"role": "assistant", "content": "Hello!\n\nHow can I help?"},
                             {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}


def _job(tmp_path, **overrides) -> dict:
    runtime = {"run_dir": str(tmp_path / "run"), "data_dir": str(tmp_path / "data"),
               "records": json.dumps(overrides.pop("records", RECORDS))}
    runtime.update(overrides.pop("runtime", {}))
    return make_job(framework="swift", runtime=runtime, **overrides)


def _recipe_job(tmp) -> dict:
    # alpha 24 (ms-swift default 32), r 16 (8), dropout 0.0 (0.05), two targets (all-linear), max length 256 so
    # the third record is truncated (default: dropped), batch 8 x accumulation 1 (default ceil(16 / 8) = 2).
    data = tmp / "data"
    data.mkdir()
    for split, rows in (("train", RECORDS), ("eval", RECORDS[:2])):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return _job(tmp, train__lora__r=16, train__lora__alpha=24, train__lora__dropout=0.0, train__max_length=256,
                train__lora__targets=["q_proj", "v_proj"], runtime={"load_data": True})


def _conversation_job(tmp, loss_on: str) -> dict:
    record = {**CONVERSATION, "loss_on": loss_on}
    return _job(tmp, dataset="tiny_messages", dataset__loss_on=loss_on, records=[record, record, record])


RECIPE = SWIFT_PROBES.add("recipe", _RESOLVE, _recipe_job)
CONVERSATIONS = {loss_on: SWIFT_PROBES.add(f"conversation_{loss_on}", _RESOLVE,
                                           lambda tmp, loss_on=loss_on: _conversation_job(tmp, loss_on))
                 for loss_on in ("all_assistant", "last_assistant")}
QLORA = SWIFT_PROBES.add("qlora", _RESOLVE, lambda tmp: _job(tmp, train__quantization="4bit"))


@pytest.fixture(scope="module")
def swift_job(swift_probes):
    return swift_probes.jobs[RECIPE]


@pytest.fixture(scope="module")
def resolved(swift_probes):
    return swift_probes[RECIPE]


def test_swift_lora_rank_and_alpha(resolved, swift_job):
    lora = swift_job["train"]["lora"]
    assert (lora["r"], lora["alpha"]) != (8, 32)  # tuner_args.py: lora_rank 8, lora_alpha 32
    assert resolved["args"]["lora_rank"] == lora["r"]
    assert resolved["args"]["lora_alpha"] == lora["alpha"]


def test_swift_lora_targets_dropout_and_variants(resolved, swift_job):
    args, lora = resolved["args"], swift_job["train"]["lora"]
    assert args["target_modules"] == lora["targets"]  # tuner_args.py: ['all-linear']
    assert args["lora_dropout"] == pytest.approx(lora["dropout"])  # tuner_args.py: 0.05
    assert (args["lora_bias"], args["use_rslora"], args["use_dora"], args["init_weights"]) == ("none", False, False, True)
    assert args["modules_to_save"] == [] and args["lora_dtype"] is None  # None: peft's fp32 adapters
    assert (args["tuner_type"], args["tuner_backend"], args["use_swift_lora"]) == ("lora", "peft", False)


def test_swift_renders_the_qwen25_chat_and_supervises_the_response_only(resolved):
    """The qwen2_5 template gives exactly the tokens and response-only labels of the Qwen2.5 chat template
    (our evaluator's tokenisation, which trl and LLaMA-Factory match), default system prompt included."""
    t = resolved["template"]
    assert t["default_system"] == "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    assert (t["loss_scale"], t["base_strategy"]) == ("LossScale", "default")
    for record in resolved["encoded"][:2]:
        assert record["ids"] == record["ref_ids"]
        assert record["labels"] == record["ref_labels"]
        assert -100 in record["labels"] and any(label != -100 for label in record["labels"])


@pytest.mark.parametrize("loss_on,strategy", [("all_assistant", "default"), ("last_assistant", "last_round")])
def test_swift_conversation_turns_supervised_as_loss_on_says(swift_probes, loss_on, strategy):
    """loss_scale: 'default' supervises every assistant turn; loss_on=last_assistant needs 'last_round'.
    A record's own system turn replaces the template's default system prompt."""
    out = swift_probes[CONVERSATIONS[loss_on]]
    assert out["template"]["base_strategy"] == strategy
    encoded = out["encoded"][0]
    assert encoded["ids"] == encoded["ref_ids"] and encoded["labels"] == encoded["ref_labels"]


def test_swift_truncates_on_the_right_instead_of_dropping(resolved, swift_job):
    # template_args.py: truncation_strategy None -> 'delete' (a longer record is dropped, or replaced).
    assert resolved["args"]["truncation_strategy"] == "right"
    long = resolved["encoded"][2]
    max_length = swift_job["train"]["max_length"]
    assert len(long["ref_ids"]) == max_length and long["ids"] == long["ref_ids"]
    assert resolved["template"]["max_length"] == resolved["args"]["max_length"] == max_length


def test_swift_strict_encoding(resolved):
    # data_args.py strict False: LazyLLMDataset replaces a record that fails to encode by a random other one.
    assert resolved["args"]["strict"] is True
    assert resolved["args"]["lazy_tokenize"] is False


def test_swift_keeps_the_data_in_file_order(resolved):
    # data_args.py dataset_shuffle True: the train set is shuffled once at load, before the sampler's shuffle.
    assert resolved["args"]["dataset_shuffle"] is False and resolved["args"]["split_dataset_ratio"] == 0.0
    expected = [[{"role": m["role"], "content": m["content"]} for m in _messages(r)] for r in RECORDS]
    assert [[{"role": m["role"], "content": m["content"]} for m in row] for row in resolved["loaded"]["train"]] == expected
    assert len(resolved["loaded"]["eval"]) == 2


def _messages(record):
    from harness.data.tokenize import messages_for

    return messages_for(record)


def test_swift_sampler_shuffle_seeded_by_the_recipe(resolved, swift_job):
    trainer = resolved["trainer"]
    assert trainer["train_dataloader_shuffle"] is True and trainer["group_by_length"] is False
    assert trainer["seed"] == trainer["data_seed"] == swift_job["train"]["seed"]


def test_swift_optimizer_and_schedule(resolved, swift_job):
    t, trainer = swift_job["train"], resolved["trainer"]
    # swift/trainers/arguments.py: weight_decay 0.1, adam_beta2 0.95, lr_scheduler_type 'cosine';
    # sft_args.py: learning_rate None -> 1e-4 for LoRA.
    assert trainer["weight_decay"] == t["weight_decay"] != 0.1
    assert (trainer["adam_beta1"], trainer["adam_beta2"], trainer["adam_epsilon"]) == (0.9, 0.999, 1e-8)
    assert trainer["lr_scheduler_type"] == t["lr_scheduler"] != "cosine"
    assert (trainer["warmup_steps"], trainer["warmup_ratio"]) == (t["warmup_steps"], 0.0)
    assert trainer["learning_rate"] == pytest.approx(t["lr"])
    assert trainer["optim"] == t["optimizer"] and trainer["optimizer"] is None
    assert trainer["max_grad_norm"] == t["max_grad_norm"] and trainer["max_steps"] == t["max_steps"]


def test_swift_gradient_accumulation(resolved, swift_job):
    # swift/trainers/arguments.py: gradient_accumulation_steps None -> ceil(16 / batch / world) (2 for batch 8).
    t = swift_job["train"]
    assert resolved["trainer"]["gradient_accumulation_steps"] == t["grad_accum"] == 1
    assert resolved["trainer"]["per_device_train_batch_size"] == t["batch_size"]
    assert resolved["trainer"]["per_device_eval_batch_size"] == 1


def test_swift_float32_model_trains_without_fp16_autocast(resolved):
    # model_args.py _init_torch_dtype: fp16/bf16 None and a float32 model -> fp16=True (mixed precision).
    assert resolved["args"]["torch_dtype"] == "torch.float32"
    assert resolved["trainer"]["fp16"] is False and resolved["trainer"]["bf16"] is False


def test_swift_non_reentrant_checkpointing(resolved):
    # swift/trainers/mixin.py _fix_gradient_checkpointing: use_reentrant unset -> True on a single process.
    assert resolved["trainer"]["gradient_checkpointing"] is True
    assert resolved["trainer"]["gradient_checkpointing_kwargs"] == {"use_reentrant": False}


def test_swift_logits_for_every_position(resolved):
    # swift/trainers/mixin.py get_use_logits_to_keep: None -> True (labels cut to the supervised span).
    assert resolved["trainer"]["use_logits_to_keep"] is False


def test_swift_plain_cross_entropy(resolved):
    trainer = resolved["trainer"]
    assert trainer["loss_type"] is None  # the model's own token-mean cross-entropy
    assert (trainer["enable_dft_loss"], trainer["enable_channel_loss"], trainer["use_liger_kernel"]) == (False, False, False)


def test_swift_dataloader_reporting_and_output(resolved, swift_job):
    trainer = resolved["trainer"]
    assert trainer["dataloader_num_workers"] == 0  # default None -> 1 worker process
    assert trainer["report_to"] in ([], ["none"], "none")  # default ['tensorboard']
    assert trainer["check_model"] is False  # default True: asks the ModelScope hub about the model
    assert resolved["args"]["add_version"] is False  # default True: output_dir/<version>-<timestamp>
    assert trainer["output_dir"].endswith("framework_output")


def test_swift_model_on_this_process_device(resolved):
    # swift/model/utils.py get_default_device_map: 'auto' (layer-wise over every GPU) when 2+ are visible.
    assert resolved["args"]["device_map"] == "cpu"
    assert resolved["args"]["model_type"] == "qwen2" and resolved["args"]["template"] == "qwen2_5"


def test_swift_pads_to_a_multiple_of_8_on_the_right(resolved):
    # swift/template/base.py _data_collator pads to the longest row; the others pad to a multiple of 8.
    collated = resolved["collated"]
    longest = max(collated["lengths"])
    assert longest % 8 != 0, "the records must not fill a multiple of 8 by themselves"
    assert collated["shape"][1] == -(-longest // 8) * 8
    assert resolved["template"]["padding_side"] == "right"
    assert set(collated["pad_labels"]) == {-100} and set(collated["pad_ids"]) == {collated["pad_token_id"]}


def test_swift_no_packing_by_default(resolved):
    assert resolved["args"]["packing"] is False and resolved["args"]["padding_free"] is False


def test_swift_qlora_quantization(swift_probes):
    # quant_args.py: bnb_4bit_compute_dtype None -> the model's dtype (float32 on CPU, not bfloat16).
    out = swift_probes[QLORA]
    assert out["quantization"] == {"load_in_4bit": "True", "bnb_4bit_quant_type": "nf4",
                                   "bnb_4bit_use_double_quant": "True", "bnb_4bit_compute_dtype": "torch.bfloat16"}
