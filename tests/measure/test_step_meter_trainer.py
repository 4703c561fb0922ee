"""StepMeter inside a real HF Trainer loop (what trl / unsloth / LLaMA-Factory all run), on CPU."""
import json
from pathlib import Path

import torch

from harness.data.tokenize import tokenize_record
from harness.worker.step_meter import StepMeter

TINY = Path(__file__).resolve().parents[2] / "harness" / "assets" / "tiny"
HUB = Path("/work/shared/hub/Qwen/Qwen2.5-0.5B-Instruct")


def test_counts_match_the_data_and_the_trainers_own_counter(tmp_path):
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, Trainer, TrainingArguments

    tok = AutoTokenizer.from_pretrained(str(TINY if (TINY / "tokenizer_config.json").exists() else HUB))
    lines = (TINY / "medical_train.jsonl").read_text(encoding="utf-8").splitlines()[:16]
    items = [tokenize_record(tok, json.loads(line), 96) for line in lines]
    pad = tok.pad_token_id

    def collate(batch):
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.tensor([b["input_ids"] + [pad] * (width - len(b["input_ids"])) for b in batch])
        labels = torch.tensor([b["labels"] + [-100] * (width - len(b["labels"])) for b in batch])
        mask = torch.tensor([[1] * len(b["input_ids"]) + [0] * (width - len(b["input_ids"])) for b in batch])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=2,
                             gradient_accumulation_steps=2, logging_steps=1, report_to=[], save_strategy="no",
                             use_cpu=True, include_num_input_tokens_seen="non_padding", learning_rate=1e-3,
                             dataloader_num_workers=0, disable_tqdm=True)
    meter = StepMeter(warmup_steps=1)
    trainer = Trainer(model=model, args=args, train_dataset=items, data_collator=collate, callbacks=[meter])
    trainer.train()

    s = meter.summary()
    assert s["steps"] == 4 and s["timed_steps"] == 3
    assert s["samples"] == 16  # 4 steps x 2 micro-batches x 2 rows = exactly one epoch
    assert s["tokens"] == sum(len(it["input_ids"]) for it in items)
    assert s["supervised_tokens"] == sum(sum(1 for x in it["labels"][1:] if x != -100) for it in items)
    assert s["framework_tokens_seen"] == s["tokens"]
    assert all(r["micro_batches"] == 2 and r["loss"] is not None and r["grad_norm"] > 0 for r in s["log"])
    assert s["tokens_per_s"] > 0 and s["step_time_s"]["median"] > 0
    # host pauses per step (host_pauses.py), and the meter leaves the interpreter's gc callbacks as it found them
    import gc
    assert all({"gc_s", "gc_collections", "gc_gen2", "involuntary_switches"} <= r.keys() for r in s["log"])
    assert meter._pauses._on_gc not in gc.callbacks
