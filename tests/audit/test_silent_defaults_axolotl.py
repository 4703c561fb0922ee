"""axolotl's silent defaults: one test per default the adapter pins, each failing if it stops pinning it.

Every check runs under the axolotl environment (``.envs/axolotl-0.19.0``) through axolotl's own pipeline, as
``axolotl train CONFIG`` runs it: ``load_cfg`` (its validation and normalisation resolve the defaults) on the
config the adapter writes, ``load_datasets`` (its chat_template tokenisation, truncation and cache) and
``setup_model_and_trainer`` (its model and LoRA loading and trainer builder), stopping before ``train()``.
The snippet runs once per job, each job a probe of the axolotl environment (``tests/helpers/framework_env.py``:
one interpreter imports axolotl once for all of them, a forked child per probe). Each default is named with the file of axolotl 0.19.0 that
holds it.
"""
from __future__ import annotations

import json

import pytest

from harness.frameworks.adapter import FrameworkUnavailable
from tests.helpers.framework_env import AXOLOTL, PROBES
from tests.helpers.jobs import make_job

AXOLOTL_PROBES = PROBES[AXOLOTL]

# Resolve the config, prepare the data and build the trainer as do_train does; encode every prepared record
# with our evaluator's tokenisation (what every other framework trains on); build trl's LoRA init for the same
# seed (set_seed, then get_peft_model, as trl's SFTTrainer does) to compare the adapters' initial weights.
_RESOLVE = """
import enum
import os
os.environ["AXOLOTL_DO_NOT_TRACK"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
from pathlib import Path

import torch
from transformers import TrainerCallback

from harness.data.dataset import read_split
from harness.data.tokenize import tokenize_record
from harness.frameworks import axolotl as adapter
from harness.worker.model_cache import random_weights_model

job["model"]["path"] = str(random_weights_model(Path(job["model"]["path"]), job["model"]["init_seed"]))
from axolotl.cli.args import TrainerCliArgs
from axolotl.cli.config import load_cfg
from axolotl.common.datasets import load_datasets
from axolotl.train import setup_model_and_trainer


class Sentinel(TrainerCallback):
    pass


from harness.frameworks.axolotl.plugin import HANDOFF

HANDOFF.callbacks = [Sentinel()]
adapter.write_data(job)
cfg = load_cfg(str(adapter.write_config(job)))


def value(v):
    # Enums by value; a DictDefault (axolotl's addict dict) answers None to any attribute, so no getattr here.
    if isinstance(v, enum.Enum):
        return v.value
    return dict(v) if isinstance(v, dict) else v


cfg_fields = ["lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "lora_embedding_kernel", "device_map",
              "dataset_num_proc", "dataset_prepared_path", "shuffle_merged_datasets", "excess_length_strategy",
              "include_tkps", "batch_flattening", "torch_compile", "optimizer", "lr_scheduler", "warmup_steps",
              "bf16", "fp16", "tf32", "torch_dtype", "pad_to_multiple_of", "pad_to_sequence_len", "sample_packing",
              "train_on_inputs", "sequence_len", "eot_tokens", "adapter", "load_in_4bit", "val_set_size",
              "dataloader_num_workers", "save_strategy", "eval_strategy", "seed"]
result = {"cfg": {k: str(value(cfg[k])) if k == "torch_dtype" else value(cfg[k]) for k in cfg_fields}}

if job["runtime"].get("quantization_only"):
    from axolotl.loaders import ModelLoader, load_tokenizer

    loader = ModelLoader(cfg, load_tokenizer(cfg))
    loader._set_quantization_config()
    quant = loader.model_kwargs["quantization_config"]
    result["quantization"] = {k: str(getattr(quant, k)) for k in ["load_in_4bit", "bnb_4bit_quant_type",
                              "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype", "bnb_4bit_quant_storage"]}
    # The 4-bit model itself (bitsandbytes has a CPU backend): the dtypes of its frozen parameters.
    model, _ = ModelLoader(cfg, load_tokenizer(cfg)).load()
    result["frozen_dtypes"] = sorted({str(p.dtype) for p in model.parameters()
                                      if not p.requires_grad and p.is_floating_point()})
    result["trainable_dtypes"] = sorted({str(p.dtype) for p in model.parameters() if p.requires_grad})
    from harness.worker.live_fields.lora_init import lora_init_snapshot

    result["lora_init"] = lora_init_snapshot(model)  # compared with trl's in tests/audit/test_lora_init_qlora.py
else:
    meta = load_datasets(cfg=cfg, cli_args=TrainerCliArgs())
    trainer, model, tokenizer, peft_config, _ = setup_model_and_trainer(cfg, meta)
    args = trainer.args
    arg_fields = ["lr_scheduler_type", "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon",
                  "max_grad_norm", "optim", "learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size",
                  "gradient_accumulation_steps", "max_steps", "seed", "data_seed", "average_tokens_across_devices",
                  "include_num_input_tokens_seen", "disable_tqdm", "eval_strategy", "eval_on_start", "save_strategy",
                  "dataloader_num_workers", "dataloader_drop_last", "gradient_checkpointing",
                  "gradient_checkpointing_kwargs", "bf16", "fp16", "report_to", "torch_compile", "include_tkps",
                  "sample_packing", "max_seq_length", "output_dir"]
    result["args"] = {k: value(getattr(args, k)) for k in arg_fields}
    result["callbacks"] = [type(cb).__name__ for cb in trainer.callback_handler.callbacks]
    result["model_accepts_loss_kwargs"] = trainer.model_accepts_loss_kwargs
    records = read_split(job["runtime"]["data_dir"], "train")
    rows = meta.train_dataset
    result["rows"] = [{"ids": list(r["input_ids"]), "labels": list(r["labels"])} for r in rows]
    result["ref"] = [tokenize_record(tokenizer, r, job["train"]["max_length"]) for r in records]
    result["eval_rows"] = len(meta.eval_dataset)
    result["newline_id"] = tokenizer.encode("\\n", add_special_tokens=False)
    result["eos_id"] = tokenizer.eos_token_id
    batch = trainer.data_collator([{k: rows[i][k] for k in ("input_ids", "attention_mask", "labels")} for i in (0, 1)])
    result["collated"] = {"collator": type(trainer.data_collator).__name__, "shape": list(batch["input_ids"].shape),
                          "lengths": [len(rows[i]["input_ids"]) for i in (0, 1)],
                          "pad_labels": batch["labels"][1, len(rows[1]["input_ids"]):].tolist(),
                          "pad_ids": batch["input_ids"][1, len(rows[1]["input_ids"]):].tolist(),
                          "pad_token_id": tokenizer.pad_token_id, "padding_side": tokenizer.padding_side}
    lora = model.peft_config["default"]
    result["lora"] = {"r": lora.r, "lora_alpha": lora.lora_alpha, "lora_dropout": lora.lora_dropout,
                      "target_modules": sorted(lora.target_modules), "bias": lora.bias, "use_rslora": lora.use_rslora,
                      "use_dora": lora.use_dora, "init_lora_weights": lora.init_lora_weights}
    layer = model.base_model.model.model.layers[0]
    result["modules"] = {"attention_forward": type(layer.self_attn).forward.__module__,
                         "mlp_forward": type(layer.mlp).forward.__module__,
                         "patched_instance_forward": sorted(n for n, m in model.named_modules() if "forward" in vars(m)),
                         "model_device": str(next(model.parameters()).device)}

    # trl's initialisation: seed, then peft's get_peft_model over the same model files.
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, set_seed
    from harness.frameworks.sft_common import lora_config_args

    set_seed(job["train"]["seed"])
    reference = get_peft_model(AutoModelForCausalLM.from_pretrained(job["model"]["path"], dtype=torch.float32),
                               LoraConfig(**lora_config_args(job)))
    ours = {n: p for n, p in model.named_parameters() if "lora_A" in n}
    theirs = {n: p for n, p in reference.named_parameters() if "lora_A" in n}
    result["lora_A"] = {"names_equal": sorted(ours) == sorted(theirs), "count": len(ours),
                        "equal": all(torch.equal(ours[n].detach().cpu(), theirs[n].detach()) for n in ours if n in theirs)}
"""

RECORDS = [
    {"instruction": "Sore throat?", "input": "", "output": "Warm fluids.\n\nRest."},
    {"instruction": "Translate", "input": "bonjour", "output": "hello"},
    {"instruction": "List three fruits " * 6, "input": "", "output": "apple, pear, plum " * 40},
]
CONVERSATION = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi\nthere"},
                             {"role": "assistant", "content": "Hello!\n\nHow can I help?"},
                             {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}


def _job(tmp, records=RECORDS, **overrides) -> dict:
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", records), ("eval", records[:2])):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    runtime = {"run_dir": str(tmp / "run"), "data_dir": str(data)}
    runtime.update(overrides.pop("runtime", {}))
    return make_job(framework="axolotl", runtime=runtime, **overrides)


def _recipe_job(tmp) -> dict:
    # alpha 24, dropout 0.1, two targets, max length 256 so the third record is truncated (default: dropped),
    # 60 steps (default warm-up: 3% -> 1 step -> 2), linear schedule (default cosine), adamw_torch (default fused).
    return _job(tmp, train__lora__r=16, train__lora__alpha=24, train__lora__dropout=0.1, train__max_length=256,
                train__lora__targets=["q_proj", "v_proj"])


def _conversations_job(tmp) -> dict:
    """One job, both scopes: the prepared records carry their own loss_on (harness.data.formats)."""
    records = [{**CONVERSATION, "loss_on": "all_assistant"}, {**CONVERSATION, "loss_on": "last_assistant"}]
    return _job(tmp, records=records + records[:1], dataset="tiny_messages")


def _qlora_job(tmp) -> dict:
    # bf16, as on a GPU (the CPU's float32 would hide the dtype the base is kept in).
    return _job(tmp, train__quantization="4bit", train__precision="bf16", runtime={"quantization_only": True})


RECIPE = AXOLOTL_PROBES.add("recipe", _RESOLVE, _recipe_job)
CONVERSATIONS = AXOLOTL_PROBES.add("conversations", _RESOLVE, _conversations_job)
QLORA = AXOLOTL_PROBES.add("qlora", _RESOLVE, _qlora_job)


@pytest.fixture(scope="module")
def axolotl_job(axolotl_probes):
    return axolotl_probes.jobs[RECIPE]


@pytest.fixture(scope="module")
def resolved(axolotl_probes):
    return axolotl_probes[RECIPE]


def test_axolotl_lora_shape_and_variants(resolved, axolotl_job):
    lora, job_lora = resolved["lora"], axolotl_job["train"]["lora"]
    assert (lora["r"], lora["lora_alpha"]) == (job_lora["r"], job_lora["alpha"])
    assert lora["lora_dropout"] == pytest.approx(job_lora["dropout"])  # schemas/peft.py: 0.0
    assert lora["target_modules"] == sorted(job_lora["targets"])
    assert (lora["bias"], lora["use_rslora"], lora["use_dora"], lora["init_lora_weights"]) == ("none", False, False, True)


def test_axolotl_adapters_initialised_from_the_recipe_seed(resolved):
    # axolotl/loaders/model.py load: nothing seeds the generator before the adapters are created (cfg.seed
    # reaches only the Trainer); the adapter seeds in the plugin's pre_lora_load, as trl's SFTTrainer does.
    assert resolved["lora_A"]["names_equal"] and resolved["lora_A"]["count"] == 2 * 2  # 2 layers x 2 targets
    assert resolved["lora_A"]["equal"], "LoRA A matrices differ from trl's initialisation for the same seed"


def test_axolotl_lora_kernels_off(resolved):
    # schemas/config.py check_auto_enable_lora_kernels: None -> True (its own autograd functions and Triton
    # SwiGLU kernels in place of the attention and MLP projections, monkeypatch/lora_kernels.py).
    cfg, modules = resolved["cfg"], resolved["modules"]
    assert [cfg[f"lora_{k}_kernel"] for k in ("mlp", "qkv", "o", "embedding")] == [False] * 4
    assert modules["attention_forward"].startswith("transformers.models.qwen2")
    assert modules["mlp_forward"].startswith("transformers.models.qwen2")
    assert not [n for n in modules["patched_instance_forward"] if n.endswith((".mlp", ".self_attn"))]


def test_axolotl_renders_the_chat_template_and_supervises_the_response_only(resolved):
    """The chat_template type with the tokenizer's template gives exactly the tokens and response-only labels of
    our evaluator (trl's and LLaMA-Factory's), the default system prompt included. Its own default supervises the
    <|im_end|> of a turn but not the newline after it (chat_template.py find_first_eot_token, eot_tokens
    [eos_token]); eot_tokens ['\\n'] adds it."""
    assert resolved["cfg"]["eot_tokens"] == ["\n"] and resolved["cfg"]["train_on_inputs"] is False
    for row, ref in zip(resolved["rows"], resolved["ref"]):
        assert row["ids"] == ref["input_ids"]
        assert row["labels"] == ref["labels"]
    first, ref = resolved["rows"][0], resolved["ref"][0]
    assert first["labels"][-2:] == [resolved["eos_id"], *resolved["newline_id"]]  # the turn's last two tokens


@pytest.fixture(scope="module")
def conversations(axolotl_probes):
    return axolotl_probes[CONVERSATIONS]


@pytest.mark.parametrize("index,supervised_turns", [(0, 2), (1, 1)], ids=["all_assistant", "last_assistant"])
def test_axolotl_conversation_turns_supervised_as_loss_on_says(conversations, index, supervised_turns):
    """Each turn's message_field_training flag decides; a record's own system turn replaces the default."""
    row, ref = conversations["rows"][index], conversations["ref"][index]
    assert row["ids"] == ref["input_ids"] and row["labels"] == ref["labels"]
    labels = row["labels"]
    runs = sum(1 for i, label in enumerate(labels) if label != -100 and (i == 0 or labels[i - 1] == -100))
    assert runs == supervised_turns


def test_axolotl_truncates_instead_of_dropping(resolved, axolotl_job):
    # axolotl/utils/data/utils.py handle_long_seq_in_dataset: excess_length_strategy None -> 'drop'.
    assert resolved["cfg"]["excess_length_strategy"] == "truncate"
    max_length = axolotl_job["train"]["max_length"]
    long, ref = resolved["rows"][2], resolved["ref"][2]
    assert ref["truncated"] and len(long["ids"]) == max_length and long["ids"] == ref["input_ids"]
    assert resolved["cfg"]["sequence_len"] == resolved["args"]["max_seq_length"] == max_length


def test_axolotl_keeps_the_data_in_file_order(resolved):
    # axolotl/utils/data/shared.py merge_datasets: shuffle_merged_datasets True shuffles the train set at load.
    assert resolved["cfg"]["shuffle_merged_datasets"] is False
    assert len(resolved["rows"]) == len(RECORDS) and resolved["eval_rows"] == 2
    assert [r["ids"] for r in resolved["rows"]] == [r["input_ids"] for r in resolved["ref"]]


def test_axolotl_dataset_preparation_in_the_run_directory_in_one_process(resolved, axolotl_job):
    # utils/data/shared.py: dataset_prepared_path None -> ./last_run_prepared (the working directory);
    # utils/datasets.py get_default_process_count: dataset_num_proc None -> os.cpu_count().
    assert resolved["cfg"]["dataset_prepared_path"].startswith(axolotl_job["runtime"]["run_dir"])
    assert resolved["cfg"]["dataset_num_proc"] == 1


def test_axolotl_optimizer_and_schedule(resolved, axolotl_job):
    t, args = axolotl_job["train"], resolved["args"]
    # schemas/training.py: optimizer 'adamw_torch_fused', lr_scheduler 'cosine'.
    assert resolved["cfg"]["optimizer"] == args["optim"] == t["optimizer"] != "adamw_torch_fused"
    assert resolved["cfg"]["lr_scheduler"] == args["lr_scheduler_type"] == t["lr_scheduler"] != "cosine"
    # core/builders/base.py _configure_warmup_and_logging: warmup_steps None -> min(int(3% of steps), 100),
    # 1 for these 60 steps, which it then turns into 2.
    assert args["warmup_steps"] == t["warmup_steps"] == 0
    assert (args["adam_beta1"], args["adam_beta2"], args["adam_epsilon"]) == (0.9, 0.999, 1e-8)
    assert args["weight_decay"] == t["weight_decay"] and args["max_grad_norm"] == t["max_grad_norm"]
    assert args["learning_rate"] == pytest.approx(t["lr"]) and args["max_steps"] == t["max_steps"]


def test_axolotl_batch_and_seed(resolved, axolotl_job):
    t, args = axolotl_job["train"], resolved["args"]
    assert (args["per_device_train_batch_size"], args["gradient_accumulation_steps"]) == (t["batch_size"], t["grad_accum"])
    assert args["per_device_eval_batch_size"] == 1  # schemas/validation.py: eval_batch_size None -> micro_batch_size
    assert args["seed"] == args["data_seed"] == t["seed"]  # data_seed: not mapped by axolotl (None)


def test_axolotl_trainer_arguments_it_hard_codes(resolved):
    # core/builders/base.py _set_base_training_args: average_tokens_across_devices False (each DDP rank's loss is
    # its own token mean); include_num_input_tokens_seen from a boolean (True counts padding); no disable_tqdm.
    args = resolved["args"]
    assert args["average_tokens_across_devices"] is True
    assert args["include_num_input_tokens_seen"] == "non_padding"
    assert args["disable_tqdm"] is True


def test_axolotl_token_mean_over_accumulated_micro_batches(resolved):
    # core/trainers/base.py AxolotlTrainer.__init__: model_accepts_loss_kwargs False when forward has no parameter
    # named num_items_in_batch (Qwen2 takes it through **kwargs): each micro-batch's loss would be its own token
    # mean, averaged over the accumulation (and the DDP ranks), where transformers (and trl) divide by all tokens.
    assert resolved["model_accepts_loss_kwargs"] is True


def test_axolotl_no_evaluation_or_saving_during_training(resolved):
    # core/builders/base.py _configure_save_and_eval_strategy: save_strategy None -> 'epoch'; eval_strategy set
    # -> eval_on_start True.
    args = resolved["args"]
    assert args["save_strategy"] == "no"
    assert args["eval_strategy"] == "no" and args["eval_on_start"] is False
    assert resolved["cfg"]["eval_strategy"] is None


def test_axolotl_its_measurement_and_speed_features_off(resolved):
    cfg, args = resolved["cfg"], resolved["args"]
    assert cfg["include_tkps"] is False and args["include_tkps"] is False  # schemas/config.py: True
    assert cfg["batch_flattening"] is False  # schemas/validation.py: 'auto'
    assert cfg["torch_compile"] is False and args["torch_compile"] is False
    assert cfg["dataloader_num_workers"] == args["dataloader_num_workers"] == 0  # config.py: one per GPU
    assert args["dataloader_drop_last"] is False
    assert args["report_to"] in ([], ["none"], "none")


def test_axolotl_non_reentrant_checkpointing(resolved):
    args = resolved["args"]
    assert args["gradient_checkpointing"] is True
    assert args["gradient_checkpointing_kwargs"] == {"use_reentrant": False}


def test_axolotl_float32_on_cpu(resolved):
    cfg, args = resolved["cfg"], resolved["args"]
    assert (cfg["bf16"], cfg["fp16"], cfg["tf32"], cfg["torch_dtype"]) == (False, False, False, "torch.float32")
    assert (args["bf16"], args["fp16"]) == (False, False)


def test_axolotl_model_on_this_process_device(resolved):
    # utils/config/__init__.py choose_device: device_map None -> 'auto' on one process (split over every GPU).
    assert resolved["cfg"]["device_map"] == {"": "cpu"}
    assert resolved["modules"]["model_device"] == "cpu"


def test_axolotl_pads_to_a_multiple_of_8_on_the_right(resolved):
    # core/builders/causal.py build: pad_to_sequence_len None -> pad_to_multiple_of 64.
    collated = resolved["collated"]
    longest = max(collated["lengths"])
    assert longest % 8 != 0, "the records must not fill a multiple of 8 by themselves"
    assert collated["collator"] == "DataCollatorForSeq2Seq"
    assert collated["shape"][1] == -(-longest // 8) * 8 and collated["shape"][1] % 64 != 0
    assert collated["padding_side"] == "right"
    assert set(collated["pad_labels"]) == {-100} and set(collated["pad_ids"]) == {collated["pad_token_id"]}


def test_axolotl_no_packing_by_default(resolved):
    assert resolved["cfg"]["sample_packing"] is False and resolved["args"]["sample_packing"] is False


def test_axolotl_callbacks_reach_its_trainer(resolved):
    """The plugin named in the config hands the worker's callbacks to the Trainer's constructor."""
    assert "Sentinel" in resolved["callbacks"]


@pytest.fixture(scope="module")
def qlora(axolotl_probes):
    return axolotl_probes[QLORA]


def test_axolotl_qlora_quantization(qlora):
    # loaders/model.py _set_quantization_config: bnb_4bit_compute_dtype -> the model's dtype,
    # bnb_4bit_quant_storage bfloat16 (trl's BitsAndBytesConfig: uint8).
    assert (qlora["cfg"]["adapter"], qlora["cfg"]["load_in_4bit"]) == ("qlora", True)
    assert qlora["quantization"] == {"load_in_4bit": "True", "bnb_4bit_quant_type": "nf4",
                                     "bnb_4bit_use_double_quant": "True", "bnb_4bit_compute_dtype": "torch.bfloat16",
                                     "bnb_4bit_quant_storage": "torch.uint8"}


def test_axolotl_qlora_base_kept_in_its_dtype(qlora):
    # loaders/model.py _prepare_model_for_quantization (peft prepare_model_for_kbit_training: every frozen
    # non-4-bit parameter to float32), then _configure_embedding_dtypes (norms and embeddings back to bfloat16):
    # the attention biases would stay float32. The adapters stay float32, as peft makes them.
    assert qlora["frozen_dtypes"] == ["torch.bfloat16"]
    assert qlora["trainable_dtypes"] == ["torch.float32"]


# ---- what axolotl would change and cannot be told not to: refused before anything runs ----------------------
def test_axolotl_refuses_one_warmup_step():
    from harness.frameworks.axolotl import import_framework

    with pytest.raises(FrameworkUnavailable, match="warmup_steps 1 into 2"):
        import_framework(make_job(framework="axolotl", train__warmup_steps=1))


def test_axolotl_refuses_packing_without_flash_attention():
    from harness.frameworks.axolotl import import_framework

    with pytest.raises(FrameworkUnavailable, match="packs rows only over flash or flex attention"):
        import_framework(make_job(framework="axolotl", train__packing=True))


def test_axolotl_refuses_several_processes_without_a_gpu():
    import torch

    from harness.frameworks.axolotl import import_framework

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: axolotl places each rank on its GPU")
    with pytest.raises(FrameworkUnavailable, match="several processes only on GPUs"):
        import_framework(make_job(framework="axolotl", runtime={"world_size": 2}))
