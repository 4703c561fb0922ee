"""ms-swift (ModelScope SWIFT, PyPI ``ms-swift``): its own SFT pipeline, ``swift.pipelines.SwiftSft``,
which ``sft_main`` runs, built from ``SftArguments`` and trained by its ``Seq2SeqTrainer``.

Data goes in as ms-swift's standard ``messages`` jsonl (``harness.data.tokenize.messages_for`` of each
prepared record, as every adapter does), rendered by its ``qwen2_5`` template, whose default system prompt
is the Qwen2.5 chat template's. Only assistant tokens are supervised (``loss_scale``).

Three things ms-swift has no argument for, done here through its own extension points:

- our callbacks: ms-swift builds its Trainer with the callbacks named in ``args.callbacks``, looked up
  in ``swift.callbacks_map`` (its plugin registry); each of ours is registered there under its own name.
- padding to a multiple of 8: its collator pads to the longest row only, so the template's collator is
  wrapped to pass its own ``padding_to`` argument at the next multiple of ``PAD_TO_MULTIPLE_OF`` (the
  shapes every other framework computes on; audited as ``padded_lengths``).
- the framework's eval loss: ``SwiftSft`` trains only; its trainer's ``evaluate()`` runs once afterwards.

Every default of ms-swift's that changes the job is pinned in ``native_args``, each with the file of
ms-swift 4.6.0 (``swift/...``) that holds the default.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from harness.frameworks.adapter import Adapter
from harness.frameworks.base import (PAD_TO_MULTIPLE_OF, FrameworkUnavailable, Job, TrainCallTimer, Trained, precision,
                                     torch_dtype_name, training_arguments, uses_cuda)
from harness.frameworks.quantization import bnb_config_args
from harness.frameworks.recipes import apply_recipe

PACKAGES = ("ms-swift", "transformers", "peft", "trl", "accelerate", "datasets", "torch", "bitsandbytes")
INSTALL_HINT = "python -m harness env build framework=swift"
CALLBACK_PREFIX = "harness_callback_"
# ms-swift packs (and batches padding-free) only over flash attention (swift/arguments/sft_args.py
# _check_padding_free raises otherwise).
FLASH_ATTENTION = ("flash_attn", "flash_attention_2", "flash_attention_3", "flash_attention_4")


def import_framework(job: Job) -> None:
    """Refuse, as unavailable, what ms-swift refuses: packing without a flash attention implementation."""
    attention = job["model"]["attn_implementation"]
    if job["train"]["packing"] and attention not in FLASH_ATTENTION:
        raise FrameworkUnavailable(f"ms-swift packs only with flash attention (model.attn_implementation={attention}; "
                                   "swift/arguments/sft_args.py _check_padding_free)")
    import swift.pipelines.train.sft  # noqa: F401  (an ImportError is reported with install_hint)


def _conversations(job: Job) -> bool:
    return (job.get("dataset") or {}).get("format") in ("sharegpt", "messages")


def data_files(job: Job) -> dict[str, str]:
    """Where the ms-swift copies of the prepared splits go (beside the framework's output)."""
    folder = Path(job["runtime"]["run_dir"]) / "swift_data"
    return {"train": str(folder / "train.jsonl"), "eval": str(folder / "eval.jsonl")}


def device_map(job: Job) -> str:
    """This process's own device. ms-swift's default (None, swift/model/utils.py get_default_device_map) is
    'auto' when a process sees two or more GPUs: the model split layer-wise over all of them."""
    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if uses_cuda(job) else "cpu"


def native_args(job: Job) -> dict[str, Any]:
    """``SftArguments`` for ``job``: the shared Trainer arguments plus every ms-swift default we must not inherit."""
    t, lora = job["train"], job["train"]["lora"]
    args = {k: v for k, v in training_arguments(job).items() if v is not None}
    files = data_files(job)
    last_only = _conversations(job) and job["dataset"].get("loss_on") == "last_assistant"
    args.update({
        # ---- model (swift/arguments/base_args/model_args.py) ------------------------------------------------
        "model": job["model"]["path"],
        # Qwen2ForCausalLM matches several model types; Qwen2.5 is registered under 'qwen2'
        # (swift/model/models/qwen.py), and its template is chosen below.
        "model_type": "qwen2",
        "torch_dtype": torch_dtype_name(job),  # default None: config.json's dtype
        "attn_impl": job["model"]["attn_implementation"],  # default None: transformers' choice
        "device_map": device_map(job),
        "use_hf": True,  # default False: ModelScope's hub (the model is a local folder either way)
        "check_model": False,  # default True: asks the ModelScope hub whether the local model is the latest
        # ---- template and data (swift/arguments/base_args/template_args.py, data_args.py) --------------------
        "template": "qwen2_5",  # its default_system is the Qwen2.5 chat template's (swift/template/templates/qwen.py)
        "system": None,  # default None: the template's default system, replaced by a record's own system turn
        "template_backend": "swift",
        "use_chat_template": True,
        "max_length": t["max_length"],  # default None: the model's max_model_len
        # default 'delete' (template_args.py __post_init__): a record longer than max_length is dropped; 'right'
        # keeps its first max_length tokens, as trl's keep_start and our evaluator.
        "truncation_strategy": "right",
        "padding_side": "right",
        "padding_free": bool(t["packing"]),
        # default 'default': every assistant turn; 'last_round' supervises the last one only (loss_on=last_assistant).
        "loss_scale": "last_round" if last_only else "default",
        "dataset": [files["train"]],
        "val_dataset": [files["eval"]],
        "split_dataset_ratio": 0.0,  # (data_args.py) the eval set is ours, never split off the train set
        "dataset_shuffle": False,  # default True (data_args.py): shuffles the train set once at load
        "val_dataset_shuffle": False,
        "data_seed": t["seed"],
        "dataset_num_proc": 1,
        "streaming": False,
        "lazy_tokenize": False,
        "load_from_cache_file": False,
        # default False (data_args.py): a record that fails to encode is silently replaced by a random other
        # one (swift/dataset/utils.py LazyLLMDataset); strict raises instead.
        "strict": True,
        "packing": bool(t["packing"]),
        "packing_strategy": "binpack",
        # ---- tuner (swift/arguments/tuner_args.py) -------------------------------------------------------
        "tuner_type": "lora",
        "tuner_backend": "peft",
        "use_swift_lora": False,
        "lora_rank": lora["r"],  # default 8
        "lora_alpha": lora["alpha"],  # default 32
        "lora_dropout": lora["dropout"],  # default 0.05
        "target_modules": list(lora["targets"]),  # default ['all-linear']
        "lora_bias": "none",
        "lora_dtype": None,  # None: peft's own (float32 adapters over a bf16 base), as trl and LLaMA-Factory
        "use_rslora": False,
        "use_dora": False,
        "init_weights": True,  # peft's default LoRA init (A kaiming-uniform, B zero)
        "modules_to_save": [],
        "lorap_lr_ratio": None,
        "use_galore": False,
        # ---- trainer (swift/trainers/arguments.py TrainArgumentsMixin) -------------------------------------
        # gradient_accumulation_steps default None -> ceil(16 / batch / world): pinned by training_arguments,
        # as are weight_decay (default 0.1), adam_beta2 (0.95), lr_scheduler_type ('cosine'),
        # dataloader_num_workers (None -> 1), report_to (['tensorboard']) and learning_rate (None -> 1e-4).
        "warmup_ratio": 0.0,
        "train_dataloader_shuffle": True,  # its sampler: randperm seeded with data_seed + epoch, as accelerate's
        "group_by_length": False,
        "optimizer": None,  # ms-swift's optimizer plugin: None = Trainer.create_optimizer (args.optim)
        "loss_type": None,  # None: the model's own token-mean cross-entropy
        "enable_dft_loss": False,
        "enable_channel_loss": False,
        "router_aux_loss_coef": 0.0,
        "use_liger_kernel": False,
        # default None -> True (swift/trainers/mixin.py get_use_logits_to_keep): cuts the labels to the
        # supervised span and computes logits only there; the other frameworks compute every position.
        "use_logits_to_keep": False,
        "predict_with_generate": False,
        "vit_gradient_checkpointing": False,
        "callbacks": [],
        "add_version": False,  # default True: output_dir/<version>-<timestamp>
        "logging_first_step": True,
    })
    if precision(job) == "fp32":
        # default bf16/fp16 None (swift/arguments/base_args/model_args.py _init_torch_dtype): a float32 model
        # would train with fp16 autocast. training_arguments already says False for both; kept explicit.
        args["bf16"], args["fp16"] = False, False
    quant = bnb_config_args(job)
    if quant is not None:
        args.update({"quant_method": "bnb", "quant_bits": 4, "bnb_4bit_quant_type": quant["bnb_4bit_quant_type"],
                     "bnb_4bit_use_double_quant": quant["bnb_4bit_use_double_quant"],
                     # default None -> torch_dtype (swift/arguments/base_args/quant_args.py)
                     "bnb_4bit_compute_dtype": quant["bnb_4bit_compute_dtype"]})
    return apply_recipe(job, args, flat="swift")  # recipe=recommended only


def write_data(job: Job) -> None:
    """The prepared splits as ms-swift ``messages`` records (the chat every adapter trains on)."""
    from harness.data.dataset import read_split
    from harness.data.tokenize import messages_for

    for split, path in data_files(job).items():
        lines = [json.dumps({"messages": messages_for(r)}, ensure_ascii=False)
                 for r in read_split(job["runtime"]["data_dir"], split)]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


class PadToMultiple:
    """ms-swift's collator, padding each batch to the next multiple of ``pad_to_multiple_of`` through its
    own ``padding_to`` argument (it pads to the longest row otherwise). ``template`` stays reachable: the
    audit reads the live ``max_length`` from it."""

    def __init__(self, template: Any, pad_to_multiple_of: int = PAD_TO_MULTIPLE_OF) -> None:
        self.template = template
        self.pad_to_multiple_of = pad_to_multiple_of
        self._collate = template.data_collator

    def __call__(self, batch: list[dict[str, Any]], *, padding_to: int | None = None) -> dict[str, Any]:
        if padding_to is None and not self.template.padding_free:
            # ms-swift pads the first row to padding_to, then every row to the longest (_data_collator)
            longest = max(len(b["input_ids"]) for b in batch)
            padding_to = math.ceil(longest / self.pad_to_multiple_of) * self.pad_to_multiple_of
        return self._collate(batch, padding_to=padding_to)


def _register_callbacks(callbacks: list[Any]) -> list[str]:
    """Put our callbacks in ms-swift's callback registry; returns the names for ``args.callbacks``."""
    from swift.callbacks import callbacks_map

    names = []
    for index, callback in enumerate(callbacks):
        name = f"{CALLBACK_PREFIX}{index}"
        callbacks_map[name] = lambda args, trainer, callback=callback: callback
        names.append(name)
    return names


def train(job: Job, callbacks: list[Any]) -> Trained:
    from swift.arguments import SftArguments
    from swift.pipelines.train.sft import SwiftSft

    write_data(job)
    args = native_args(job)
    args["callbacks"] = _register_callbacks(callbacks)
    pipeline = SwiftSft(SftArguments(**args))
    pipeline.template.data_collator = PadToMultiple(pipeline.template)
    with TrainCallTimer() as timer:  # the wall time of trainer.train(), as for the trainers we build
        pipeline.main()  # what sft_main(args) runs
    trainer = timer.trainer
    metrics = trainer.evaluate()
    return Trained(model=trainer.model, tokenizer=pipeline.template.tokenizer,
                   framework_eval_loss=metrics.get("eval_loss"), train_call_s=timer.seconds)


class SwiftAdapter(Adapter):
    packages = PACKAGES
    distribution = "ms-swift"
    install_hint = INSTALL_HINT
    truncation = ("ms-swift truncation_strategy right (Template._truncate: the tokens beyond max_length are "
                  "dropped from the end)")
    compare_rank = 3
    # template.compute_sft_loss -> the model's forward -> ForCausalLMLoss; loss_scale binary, so no per-token
    # reweighting (docs/explain.md)
    native_loss = "transformers"

    native_args = staticmethod(native_args)
    import_framework = staticmethod(import_framework)
    train = staticmethod(train)
