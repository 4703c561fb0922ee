"""One test per known silent framework default: each fails if our adapter stops pinning it.

Each check runs a snippet against the real library under the framework's own environment
(``tests/helpers/framework_env.py``): the snippets of a framework are declared as probes and run together, in
one interpreter per framework for the whole test session. A test is skipped only when its environment cannot
be built (the skip says why). unsloth cannot be imported without CUDA: its pins are checked on ``native_args``
and through trl's ``SFTConfig``, which unsloth's SFTTrainer uses.
"""
from __future__ import annotations

import functools
from pathlib import Path

import pytest

from tests.helpers.framework_env import LLAMAFACTORY, PROBES, REPO, TRL, run_in_env  # noqa: F401  (re-exported)
from tests.helpers.hub_mirror import exported_mirror
from tests.helpers.jobs import make_job

LF, TRL_PROBES = PROBES[LLAMAFACTORY], PROBES[TRL]


# ---- (a) LLaMA-Factory, through its own parser ------------------------------------------------------------
_LF_PARSE = """
from harness.frameworks.llamafactory import native_args
from llamafactory.hparams import get_train_args
model_args, data_args, training_args, finetuning_args, generating_args = get_train_args(native_args(job))
result = {
    "lora_alpha": finetuning_args.lora_alpha, "lora_rank": finetuning_args.lora_rank,
    "lora_dropout": finetuning_args.lora_dropout, "lora_target": finetuning_args.lora_target,
    "use_rslora": finetuning_args.use_rslora, "use_dora": finetuning_args.use_dora,
    "pissa_init": finetuning_args.pissa_init, "use_dft_loss": getattr(finetuning_args, "use_dft_loss", None),
    "train_on_prompt": data_args.train_on_prompt, "mask_history": data_args.mask_history,
    "cutoff_len": data_args.cutoff_len, "packing": data_args.packing, "neat_packing": data_args.neat_packing,
    "template": data_args.template,
    "use_reentrant_gc": model_args.use_reentrant_gc,
    "disable_gradient_checkpointing": model_args.disable_gradient_checkpointing,
    "flash_attn": str(getattr(model_args.flash_attn, "value", model_args.flash_attn)),
    "use_unsloth": model_args.use_unsloth, "use_unsloth_gc": model_args.use_unsloth_gc,
    "upcast_layernorm": model_args.upcast_layernorm, "enable_liger_kernel": model_args.enable_liger_kernel,
    "lr_scheduler_type": str(getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)),
    "warmup_steps": training_args.warmup_steps, "optim": str(getattr(training_args.optim, "value", training_args.optim)),
    "learning_rate": training_args.learning_rate, "seed": training_args.seed,
    "per_device_train_batch_size": training_args.per_device_train_batch_size,
    "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
    "ddp_find_unused_parameters": training_args.ddp_find_unused_parameters,
    "average_tokens_across_devices": training_args.average_tokens_across_devices,
    "bf16": training_args.bf16, "fp16": training_args.fp16,
    "gradient_checkpointing": training_args.gradient_checkpointing,
}
"""


@functools.cache
def _lf_job() -> dict:
    # alpha 24 != 2 x r (32): LLaMA-Factory's default would give 32. Lengths and schedule away from its defaults.
    return make_job(framework="llamafactory", train__lora__r=16, train__lora__alpha=24, train__max_length=512,
                    train__lora__dropout=0.05, train__lora__targets=["q_proj", "v_proj"])


LF_RECIPE = LF.add("recipe", _LF_PARSE, lambda _: _lf_job())


@pytest.fixture(scope="module")
def lf_job():
    return _lf_job()


@pytest.fixture(scope="module")
def lf_parsed(lf_probes):
    return lf_probes[LF_RECIPE]


def test_llamafactory_lora_alpha_is_not_2x_rank(lf_parsed, lf_job):
    lora = lf_job["train"]["lora"]
    assert lora["alpha"] != 2 * lora["r"]
    assert lf_parsed["lora_alpha"] == lora["alpha"]
    assert lf_parsed["lora_rank"] == lora["r"]


def test_llamafactory_lora_targets_dropout_and_variants(lf_parsed, lf_job):
    assert lf_parsed["lora_target"] == lf_job["train"]["lora"]["targets"]  # default "all"
    assert lf_parsed["lora_dropout"] == pytest.approx(lf_job["train"]["lora"]["dropout"])
    assert (lf_parsed["use_rslora"], lf_parsed["use_dora"], lf_parsed["pissa_init"]) == (False, False, False)
    assert lf_parsed["use_dft_loss"] in (False, None)


def test_llamafactory_response_only_loss(lf_parsed):
    assert lf_parsed["train_on_prompt"] is False
    assert lf_parsed["mask_history"] is False


def test_llamafactory_non_reentrant_checkpointing(lf_parsed, lf_job):
    assert lf_parsed["use_reentrant_gc"] is False  # LLaMA-Factory default: True
    assert lf_parsed["disable_gradient_checkpointing"] is (not lf_job["train"]["gradient_checkpointing"])
    assert lf_parsed["use_unsloth_gc"] is False and lf_parsed["use_unsloth"] is False
    # checkpointing is applied by LLaMA-Factory on the model, not by the Trainer (no double enable)
    assert lf_parsed["gradient_checkpointing"] is False


LF_CHECKPOINTING_OFF = LF.add("checkpointing_off", _LF_PARSE,
                              lambda _: make_job(framework="llamafactory", train__gradient_checkpointing=False))


def test_llamafactory_checkpointing_off_is_passed(lf_probes):
    parsed = lf_probes[LF_CHECKPOINTING_OFF]
    assert parsed["disable_gradient_checkpointing"] is True  # LLaMA-Factory default: checkpointing on


def test_llamafactory_cutoff_and_packing(lf_parsed, lf_job):
    assert lf_parsed["cutoff_len"] == lf_job["train"]["max_length"]  # default 2048
    assert lf_parsed["packing"] is False  # default None -> (stage == "pt")
    assert lf_parsed["neat_packing"] is False


def test_llamafactory_schedule_optimizer_attention(lf_parsed, lf_job):
    t = lf_job["train"]
    assert lf_parsed["lr_scheduler_type"] == t["lr_scheduler"]  # its examples use cosine
    assert lf_parsed["warmup_steps"] == t["warmup_steps"]
    assert lf_parsed["optim"] == t["optimizer"]  # transformers 5 default: adamw_torch_fused
    assert lf_parsed["learning_rate"] == pytest.approx(t["lr"])
    assert lf_parsed["seed"] == t["seed"]
    assert lf_parsed["flash_attn"] == lf_job["model"]["attn_implementation"]  # default "auto"
    assert lf_parsed["template"] == "qwen"
    assert (lf_parsed["bf16"], lf_parsed["fp16"]) == (False, False)  # fp32 on CPU


def test_llamafactory_token_averaging_matches_trl(lf_parsed, lf_job):
    # trl's adapter pins average_tokens_across_devices=True; LLaMA-Factory inherits transformers' default.
    from harness.frameworks.sft_common import sft_config_args

    assert lf_parsed["average_tokens_across_devices"] is sft_config_args(lf_job)["average_tokens_across_devices"]


LF_TWO_RANKS = LF.add("two_ranks", _LF_PARSE, lambda _: make_job(framework="llamafactory", runtime={"world_size": 2}))


def test_llamafactory_ddp_find_unused_parameters_pinned_for_multi_gpu(lf_probes):
    parsed = lf_probes[LF_TWO_RANKS]
    assert parsed["ddp_find_unused_parameters"] is False


LF_SFT_SOURCE = LF.add("sft_workflow_source", """
    import inspect
    import llamafactory.train.sft.workflow as workflow
    result = {"source": inspect.getsource(workflow.run_sft)}
""", lambda _: {})


def test_llamafactory_pads_training_batches_to_a_multiple_of_8(lf_probes):
    """LF's SFT workflow hard-codes the collator's padding (no argument reaches it); the other frameworks are
    pinned to the same value (base.PAD_TO_MULTIPLE_OF). If LF changes it, this fails and the pin must follow."""
    from harness.frameworks.base import PAD_TO_MULTIPLE_OF

    found = lf_probes[LF_SFT_SOURCE]
    assert f"pad_to_multiple_of={PAD_TO_MULTIPLE_OF} if training_args.do_train" in found["source"]


LF_TEMPLATE = LF.add("template_renders", """
    import json as _json
    from pathlib import Path
    from transformers import AutoTokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.data import get_template_and_fix_tokenizer
    from harness.frameworks.llamafactory import native_args
    from harness.data.tokenize import messages_for, tokenize_record
    model_args, data_args, *_ = get_train_args(native_args(job))
    tokenizer = AutoTokenizer.from_pretrained(job["model"]["path"])
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    rows = []
    for line in Path(job["model"]["path"], "medical_train.jsonl").read_text(encoding="utf-8").splitlines()[:8]:
        record = _json.loads(line)
        prompt, response = template.encode_oneturn(tokenizer, messages_for(record), system=data_args.default_system)
        ours = tokenize_record(tokenizer, record, 1 << 20)
        rows.append({"lf_ids": prompt + response, "lf_supervised": len(response),
                     "ids": ours["input_ids"], "supervised": sum(1 for x in ours["labels"] if x != -100)})
    result = rows
""", lambda _: _lf_job())


def test_llamafactory_template_renders_like_the_chat_template(lf_probes):
    """LLaMA-Factory renders records with its own template ("qwen", with its own default system prompt),
    not the tokenizer's chat template: the token ids and the supervised part must equal our evaluator's."""
    rows = lf_probes[LF_TEMPLATE]
    assert len(rows) == 8
    for row in rows:
        assert row["lf_ids"] == row["ids"]
        assert row["lf_supervised"] == row["supervised"]


# ---- (b) unsloth: automatic padding-free and its own checkpointing ---------------------------------------
@functools.cache
def _unsloth_job() -> dict:
    return make_job(framework="unsloth", train__packing=False)


UNSLOTH_SFT_CONFIG = TRL_PROBES.add("unsloth_sft_config", """
    from trl import SFTConfig
    from harness.frameworks.unsloth import native_args
    cfg = SFTConfig(**native_args(job)["sft_config"])
    result = {"padding_free": cfg.padding_free, "packing": cfg.packing}
""", lambda _: _unsloth_job())


def test_unsloth_padding_free_pinned_off_without_packing(trl_probes):
    from harness.frameworks.unsloth import native_args

    sft = native_args(_unsloth_job())["sft_config"]
    assert sft["padding_free"] is False  # not None: unsloth turns padding-free on when it is left unset
    parsed = trl_probes[UNSLOTH_SFT_CONFIG]
    assert parsed == {"padding_free": False, "packing": False}


def test_unsloth_lora_and_checkpointing_pinned():
    from harness.frameworks.unsloth import native_args

    job = make_job(framework="unsloth", train__lora__alpha=24, train__lora__dropout=0.05)
    peft_args = native_args(job)["get_peft_model"]
    # unsloth defaults: lora_alpha 16, use_gradient_checkpointing "unsloth" (CPU offload), random_state 3407
    assert peft_args["lora_alpha"] == 24 and peft_args["r"] == job["train"]["lora"]["r"]
    assert peft_args["lora_dropout"] == pytest.approx(0.05)
    assert peft_args["use_gradient_checkpointing"] is True
    assert peft_args["random_state"] == job["train"]["seed"]
    assert peft_args["use_rslora"] is False and peft_args["bias"] == "none"
    assert peft_args["max_seq_length"] == native_args(job)["from_pretrained"]["max_seq_length"] == job["train"]["max_length"]


# ---- (c) trl: SFTConfig built from our arguments -----------------------------------------------------------
_TRL_CONFIG = """
from trl import SFTConfig
from harness.frameworks.sft_common import sft_config_args
cfg = SFTConfig(**sft_config_args(job))
result = {k: getattr(cfg, k, None) for k in (
    "gradient_checkpointing", "gradient_checkpointing_kwargs", "loss_type", "completion_only_loss",
    "assistant_only_loss", "bf16", "fp16", "learning_rate", "max_length", "truncation_mode", "packing",
    "packing_strategy", "padding_free", "shuffle_dataset", "activation_offloading", "use_liger_kernel",
    "average_tokens_across_devices", "pad_to_multiple_of", "seed", "warmup_steps")}
result["optim"] = str(getattr(cfg.optim, "value", cfg.optim))
result["lr_scheduler_type"] = str(getattr(cfg.lr_scheduler_type, "value", cfg.lr_scheduler_type))
"""


@functools.cache
def _trl_job() -> dict:
    return make_job(framework="trl", train__gradient_checkpointing=False, train__max_length=512, train__lr=3e-4)


TRL_RECIPE = TRL_PROBES.add("recipe", _TRL_CONFIG, lambda _: _trl_job())


@pytest.fixture(scope="module")
def trl_job():
    return _trl_job()


@pytest.fixture(scope="module")
def trl_parsed(trl_probes):
    return trl_probes[TRL_RECIPE]


def test_trl_gradient_checkpointing_off_stays_off(trl_parsed):
    assert trl_parsed["gradient_checkpointing"] is False  # trl default: True


def test_trl_loss_pinned(trl_parsed):
    assert trl_parsed["loss_type"] == "nll"
    assert trl_parsed["completion_only_loss"] is True  # default None: decided from the dataset's columns
    assert trl_parsed["assistant_only_loss"] is False


def test_trl_precision_and_lr_pinned(trl_parsed, trl_job):
    assert (trl_parsed["bf16"], trl_parsed["fp16"]) == (False, False)  # trl default: bf16=True unless fp16
    assert trl_parsed["learning_rate"] == pytest.approx(trl_job["train"]["lr"])  # trl default 2e-5


def test_trl_length_truncation_packing_pinned(trl_parsed, trl_job):
    assert trl_parsed["max_length"] == trl_job["train"]["max_length"]  # trl default 1024
    assert trl_parsed["truncation_mode"] == "keep_start"
    assert trl_parsed["packing"] is False and trl_parsed["padding_free"] is False
    assert trl_parsed["shuffle_dataset"] is False
    assert trl_parsed["activation_offloading"] is False and trl_parsed["use_liger_kernel"] is False
    # trl pads to the longest row by default; LLaMA-Factory to a multiple of 8: pinned to LF's 8 for all.
    assert trl_parsed["pad_to_multiple_of"] == 8


def test_trl_optimizer_and_schedule_pinned(trl_parsed, trl_job):
    t = trl_job["train"]
    assert trl_parsed["optim"] == t["optimizer"]  # transformers 5 default: adamw_torch_fused
    assert trl_parsed["lr_scheduler_type"] == t["lr_scheduler"]
    assert trl_parsed["warmup_steps"] == t["warmup_steps"] and trl_parsed["seed"] == t["seed"]
    assert trl_parsed["average_tokens_across_devices"] is True


TRL_CHECKPOINTING_ON = TRL_PROBES.add("checkpointing_on", _TRL_CONFIG,
                                      lambda _: make_job(framework="trl", train__gradient_checkpointing=True))


def test_trl_checkpointing_on_is_non_reentrant(trl_probes):
    parsed = trl_probes[TRL_CHECKPOINTING_ON]
    assert parsed["gradient_checkpointing"] is True
    assert parsed["gradient_checkpointing_kwargs"] == {"use_reentrant": False}


# ---- (d) other silent defaults ----------------------------------------------------------------------------
def test_trl_packing_strategy_pinned():
    """With packing on, trl's default strategy ("bfd") decides how overflow is handled (truncated; "bfd_split"
    splits it instead) and switches padding-free on by itself: the strategy must be explicit."""
    from harness.frameworks.sft_common import sft_config_args

    args = sft_config_args(make_job(framework="trl", train__packing=True))
    assert args["padding_free"] is True
    if "packing_strategy" not in args:
        pytest.xfail("KNOWN GAP: sft_config_args does not pin packing_strategy (trl 1.16 default 'bfd')")
    assert args["packing_strategy"] in ("bfd", "bfd_split", "wrapped")


def _mirror() -> Path:
    # the value exported when the session started: the session's environment no longer has it (tests/conftest.py)
    return exported_mirror() or REPO.parent / "shared" / "hub"


def _qwen_mirror() -> Path:
    return _mirror() / "Qwen" / "Qwen2.5-0.5B-Instruct"


@pytest.mark.skipif(not (_qwen_mirror() / "vocab.json").exists(), reason="needs the Qwen2.5 tokenizer (HARNESS_HUB_MIRROR)")
def test_llamafactory_answer_led_by_whitespace_tokenizes_like_trl(lf_job):
    """With Qwen2.5's tokenizer, an answer starting with " \\n" (shibing624/medical train record 27) gives
    LLaMA-Factory one token fewer than the rendered conversation, unless data preparation strips it; after
    our data preparation every record of the mirrored medical sample renders identically in both."""
    job = dict(lf_job, model=dict(lf_job["model"], path=str(_qwen_mirror())))
    found = run_in_env(LLAMAFACTORY, dict(job, mirror=str(_mirror())), """
        from pathlib import Path
        from transformers import AutoTokenizer
        from llamafactory.hparams import get_train_args
        from llamafactory.data import get_template_and_fix_tokenizer
        from harness.data.dataset import load_records
        from harness.frameworks.llamafactory import native_args
        from harness.data.tokenize import messages_for, tokenize_record
        _, data_args, *_ = get_train_args(native_args(job))
        tokenizer = AutoTokenizer.from_pretrained(job["model"]["path"])
        template = get_template_and_fix_tokenizer(tokenizer, data_args)

        def same(record):
            prompt, response = template.encode_oneturn(tokenizer, messages_for(record), system=data_args.default_system)
            return prompt + response == tokenize_record(tokenizer, record, 1 << 20)["input_ids"]

        raw = {"instruction": "白带很多", "input": "", "output": " \\n根据你说的症状应该"}
        files = sorted(Path(job["mirror"], "datasets", "shibing624", "medical").rglob("*.jsonl"))
        prepared = [r for f in files for r in load_records(f)]
        result = {"raw": same(raw), "stripped": same({k: v.strip() for k, v in raw.items()}),
                  "records": len(prepared), "differing": sum(not same(r) for r in prepared)}
    """, timeout=600)
    assert (found["raw"], found["stripped"]) == (False, True)
    assert found["records"] > 0 and found["differing"] == 0, found
