"""Multi-turn conversations: the frameworks' own masking defaults, run against the real libraries.

Each test reads a snippet's result, run under the framework's environment with the other probes of that
framework (``tests/helpers/framework_env.py``), and fails if an adapter stops pinning what makes trl and
LLaMA-Factory supervise the same tokens as our evaluator on the shipped ShareGPT and messages samples.
"""
from __future__ import annotations

import pytest

from tests.helpers.framework_env import LLAMAFACTORY, PROBES, TRL
from tests.helpers.jobs import make_job

SAMPLES = ["harness/assets/conversations/medical_sharegpt.json", "harness/assets/conversations/medical_messages.jsonl"]


def _job(framework: str, fmt: str, loss_on: str) -> dict:
    job = make_job(framework=framework, dataset__loss_on=loss_on)
    job["dataset"]["format"] = fmt  # as harness.launch.repeats resolves dataset.format=auto
    job["samples"] = SAMPLES
    return job


TRL_TEMPLATES = PROBES[TRL].add("conversation_templates", """
    from pathlib import Path
    from transformers import AutoTokenizer
    from trl.chat_template_utils import get_training_chat_template
    from harness.data.dataset import load_records
    from harness.frameworks.sft_common import sft_config_args
    from harness.data.tokenize import messages_for, tokenize_record
    args = sft_config_args(job)
    tokenizer = AutoTokenizer.from_pretrained(job["model"]["path"])
    records = [r for f in job["samples"] for r in load_records(Path(f))]

    def supervised(template):
        total, same = 0, 0
        for r in records:
            out = tokenizer.apply_chat_template(messages_for(r), chat_template=template, return_dict=True,
                                                return_assistant_tokens_mask=True)
            labels = [t if m else -100 for t, m in zip(out["input_ids"], out["assistant_masks"])]
            ours = tokenize_record(tokenizer, r, 1 << 20)
            total += sum(m for m in out["assistant_masks"]) - sum(l != -100 for l in ours["labels"])
            same += labels == ours["labels"] and list(out["input_ids"]) == ours["input_ids"]
        return total, same
    turns = sum(m["role"] == "assistant" for r in records for m in messages_for(r))
    result = {"assistant_only_loss": args["assistant_only_loss"], "turns": turns, "records": len(records),
              "trl_extra": supervised(get_training_chat_template(tokenizer))[0],
              "ours": supervised(Path(args["chat_template_path"]).read_text())}
""", lambda _: _job("trl", "sharegpt", "all_assistant"))


def test_trl_own_qwen25_training_template_supervises_one_token_more_per_turn(trl_probes):
    """assistant_only_loss without our template: trl 1.16 swaps in its Qwen2.5 training template, which marks
    the newline after '<|im_start|>assistant' as assistant output (LLaMA-Factory and our evaluator count it as
    prompt). The adapter passes its own marked template; with it, every record's mask is the evaluator's."""
    found = trl_probes[TRL_TEMPLATES]
    assert found["assistant_only_loss"] is True
    assert found["trl_extra"] == found["turns"] > 0  # exactly one extra supervised token per assistant turn
    assert found["ours"] == [0, found["records"]]


_LF_CONVERSATIONS = """
    from pathlib import Path
    from transformers import AutoTokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.data.converter import SharegptDatasetConverter
    from llamafactory.data.parser import DatasetAttr
    from llamafactory.data.processor.supervised import SupervisedDatasetProcessor
    from harness.data.dataset import load_records
    from harness.frameworks.llamafactory import dataset_info, native_args
    from harness.data.tokenize import tokenize_record
    _, data_args, *_ = get_train_args(native_args(job))
    tokenizer = AutoTokenizer.from_pretrained(job["model"]["path"])
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    info = dataset_info(job)["harness_train"]
    attr = DatasetAttr("file", dataset_name="harness_train", formatting=info["formatting"])
    attr.join(info)
    convert = SharegptDatasetConverter(attr, data_args)
    process = SupervisedDatasetProcessor(template=template, tokenizer=tokenizer, processor=None, data_args=data_args)
    records = [r for f in job["samples"] for r in load_records(Path(f), loss_on=job["dataset"]["loss_on"])]
    differing = 0
    for r in records:
        ex = convert(r)
        ids, labels = process._encode_data_example(prompt=ex["_prompt"], response=ex["_response"],
                                                   system=ex["_system"], tools=ex["_tools"], images=[],
                                                   videos=[], audios=[])
        ours = tokenize_record(tokenizer, r, 1 << 20)
        differing += (ids, labels) != (ours["input_ids"], ours["labels"])
    result = {"mask_history": data_args.mask_history, "train_on_prompt": data_args.train_on_prompt,
              "formatting": info["formatting"], "records": len(records), "differing": differing}
"""
LOSS_ON = ["all_assistant", "last_assistant"]
LF_CONVERSATIONS = {loss_on: PROBES[LLAMAFACTORY].add(f"conversations_{loss_on}", _LF_CONVERSATIONS,
                                                       lambda _, loss_on=loss_on: _job("llamafactory", "messages", loss_on))
                    for loss_on in LOSS_ON}


@pytest.mark.parametrize("loss_on", LOSS_ON)
def test_llamafactory_sharegpt_tokens_and_labels_are_the_evaluators(lf_probes, loss_on):
    """LLaMA-Factory reads the prepared conversations through the generated sharegpt dataset_info (system
    turn taken as the system prompt, else the template's default) with mask_history pinned from loss_on;
    its input ids and labels equal the evaluator's for every record of both samples."""
    found = lf_probes[LF_CONVERSATIONS[loss_on]]
    assert found["mask_history"] is (loss_on == "last_assistant") and found["train_on_prompt"] is False
    assert found["formatting"] == "sharegpt" and found["records"] == 80 and found["differing"] == 0, found
