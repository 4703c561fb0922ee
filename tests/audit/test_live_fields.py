"""read_live_fields on a real (tiny, random) Qwen2 + peft LoRA trained 2 steps by transformers.Trainer on CPU."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from harness.worker.live_fields.batches import batch_record
from harness.worker.live_fields.read import read_live_fields  # noqa: E402

ASSETS = Path(__file__).resolve().parents[2] / "harness" / "assets" / "tiny"
R, ALPHA, TARGETS = 4, 12, ["q_proj", "v_proj", "down_proj"]


class StandInMeter:
    """What the StepMeter provides to the audit: the first micro-batches, recorded by a forward pre-hook."""

    def __init__(self, pad_token_id: int) -> None:
        self.first_batches: list[dict] = []
        self.pad_token_id = pad_token_id

    def hook(self, module, args, kwargs):
        if module.training and len(self.first_batches) < 8:
            rec = batch_record(kwargs, args, self.pad_token_id)
            if rec is not None:
                self.first_batches.append(rec)


class Collate:
    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, feats):
        width = max(len(f["input_ids"]) for f in feats)
        ids, mask, labels = [], [], []
        for f in feats:
            pad = width - len(f["input_ids"])
            ids.append(f["input_ids"] + [self.pad_id] * pad)
            mask.append([1] * len(f["input_ids"]) + [0] * pad)
            labels.append(f["labels"] + [-100] * pad)
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels)}


def _train(tmp, *, lora_seed: int | None = None, micro_batch_loss: bool = False, drop_token_count: bool = False) -> dict:
    """2 steps of 2 micro-batches of transformers.Trainer. ``lora_seed``: the generator reseeded right before
    get_peft_model (else it continues from the model's construction); ``micro_batch_loss``: the Trainer's
    ``model_accepts_loss_kwargs`` off (each micro-batch's loss its own token mean, divided by the accumulation);
    ``drop_token_count``: a Trainer subclass whose compute_loss drops the token count it is given, flags left on."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, Trainer, TrainingArguments

    from harness.worker.live_objects import LiveObjects
    from harness.data.tokenize import tokenize_record

    data_dir = tmp / "data"
    data_dir.mkdir()
    shutil.copy(ASSETS / "medical_train.jsonl", data_dir / "train.jsonl")
    shutil.copy(ASSETS / "medical_eval.jsonl", data_dir / "eval.jsonl")
    tokenizer = AutoTokenizer.from_pretrained(str(ASSETS))
    records = [json.loads(line) for line in (data_dir / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    max_length = 48  # short on purpose: some records get truncated
    feats = [{k: v for k, v in tokenize_record(tokenizer, r, max_length).items() if k != "truncated"}
             for r in records[:16]]

    torch.manual_seed(0)
    config = Qwen2Config.from_pretrained(str(ASSETS))
    config._attn_implementation = "eager"
    model = Qwen2ForCausalLM(config)
    if lora_seed is not None:
        torch.manual_seed(lora_seed)
    model = get_peft_model(model, LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.05, target_modules=TARGETS,
                                             bias="none", task_type="CAUSAL_LM"))
    live, meter = LiveObjects(loss_probe_steps=2), StandInMeter(tokenizer.pad_token_id)
    model.register_forward_pre_hook(meter.hook, with_kwargs=True)
    args = TrainingArguments(
        output_dir=str(tmp / "out"), use_cpu=True, report_to="none", max_steps=2, per_device_train_batch_size=2,
        gradient_accumulation_steps=2, learning_rate=1e-3, lr_scheduler_type="cosine", warmup_steps=1,
        weight_decay=0.01, adam_beta2=0.98, adam_epsilon=1e-7, seed=7, gradient_checkpointing=True,
        gradient_checkpointing_kwargs={"use_reentrant": False}, save_strategy="no", logging_steps=1,
        disable_tqdm=True, dataloader_num_workers=0, remove_unused_columns=False)
    class DropsTokenCount(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch=None)

    trainer_class = DropsTokenCount if drop_token_count else Trainer
    trainer = trainer_class(model=model, args=args, train_dataset=feats, data_collator=Collate(tokenizer.pad_token_id),
                            processing_class=tokenizer, callbacks=[live])
    if micro_batch_loss:
        trainer.model_accepts_loss_kwargs = False
    trainer.train()
    job = {"framework": {"name": "trl", "version": "test"}, "runtime": {"data_dir": str(data_dir)},
           "train": {"max_length": 9999}}  # job values must NOT be read (max_length comes from live objects)
    args.max_length = max_length  # what SFTConfig would carry; plain TrainingArguments has no such field
    audit = read_live_fields(live, meter, job)
    return {"audit": audit, "model": model, "records": records, "tokenizer": tokenizer, "meter": meter,
            "max_length": max_length, "data_dir": data_dir, "trainer": trainer, "config": config}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("live"))


def test_is_json_serialisable(trained):
    json.dumps(trained["audit"], allow_nan=False)


def test_lora_fields_from_live_model(trained):
    a = trained["audit"]
    assert a["lora_r"] == R
    assert a["lora_alpha"] == ALPHA
    assert a["lora_scaling"] == pytest.approx(ALPHA / R)
    assert a["lora_dropout"] == pytest.approx(0.05)
    assert a["lora_modules"] == sorted(TARGETS)
    assert a["lora_module_count"] == 2 * len(TARGETS)  # 2 layers
    assert a["use_rslora"] is False and a["use_dora"] is False and a["lora_bias"] == "none"
    assert a["lora_B_nonzero"] is True and a["lora_B_norm"] > 0


def test_parameter_counts(trained):
    a, model = trained["audit"], trained["model"]
    assert a["trainable_params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert a["total_params"] == sum(p.numel() for p in model.parameters())
    cfg = model.get_base_model().config
    h, inter, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    kv = cfg.num_key_value_heads * (h // cfg.num_attention_heads)
    per_layer = R * (h + h) + R * (h + kv) + R * (inter + h)  # q_proj, v_proj, down_proj: r * (in + out)
    assert a["trainable_params"] == layers * per_layer
    assert a["optimizer_params"] == a["trainable_params"]
    assert a["quantization"] == "none"
    assert a["base_dtype"] == "float32" and a["trainable_dtype"] == "float32"
    assert a["attn_implementation"] == "eager"


def test_optimizer_and_schedule(trained):
    a = trained["audit"]
    assert a["optimizer"] == "AdamW" and a["optimizer_module"].startswith("torch.optim")
    assert a["lr"] == pytest.approx(1e-3)  # the initial lr, not the decayed one
    assert a["betas"] == [0.9, 0.98]
    assert a["eps"] == pytest.approx(1e-7)
    assert a["weight_decay"] == pytest.approx(0.01)
    assert a["lr_scheduler"] == "cosine"
    assert a["warmup_steps"] == 1
    assert a["total_steps"] == 2


def test_batching_and_seed(trained):
    a = trained["audit"]
    assert (a["per_device_batch"], a["grad_accum"], a["world_size"], a["effective_batch"]) == (2, 2, 1, 4)
    assert a["seed"] == 7
    assert a["max_length"] == trained["max_length"] and a["max_length_source"] == "args.max_length"
    assert a["mixed_precision"] == "no"


def test_gradient_checkpointing_read_from_model(trained):
    a = trained["audit"]
    assert a["gradient_checkpointing"] is True
    assert a["gradient_checkpointing_use_reentrant"] is False
    assert a["gradient_checkpointing_kind"] == "hf"


def test_batches_hashes_and_loss_mask(trained):
    a, meter = trained["audit"], trained["meter"]
    assert a["first_batches_seen"] == 4  # 2 steps x 2 micro-batches
    first = meter.first_batches[0]
    assert len(first["input_ids"]) == 2 and all(first["input_ids"])
    assert a["first_batch_hash"] and len(a["first_batch_hash"]) == 64
    assert 0 < a["loss_mask_share"] < 1
    tokens = sum(b["tokens"] for b in meter.first_batches)
    sup = sum(b["labels_supervised"] for b in meter.first_batches)
    assert a["loss_mask_share"] == pytest.approx(sup / tokens)
    assert a["packing"] is False and a["padding_free"] is False  # from the batches: one sequence per row


def test_data_hashes_and_truncation(trained):
    import hashlib

    from harness.data.tokenize import tokenize_record

    a = trained["audit"]
    assert a["eval_set_hash"] == hashlib.sha256((trained["data_dir"] / "eval.jsonl").read_bytes()).hexdigest()
    expected = sum(tokenize_record(trained["tokenizer"], r, trained["max_length"])["truncated"]
                   for r in trained["records"])
    assert a["records_truncated"] == expected > 0
    assert a["records_total"] == len(trained["records"])
    assert "infer_seqlen" not in a["truncation_strategy"]  # labelled by framework name (trl)


def test_batch_record_splits_padding_free_rows_like_padded_ones():
    padded = batch_record({"input_ids": torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]]),
                           "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]),
                           "labels": torch.tensor([[-100, 6, 7, -100], [-100, 9, -100, -100]])})
    flat = batch_record({"input_ids": torch.tensor([[5, 6, 7, 8, 9]]),
                         "position_ids": torch.tensor([[0, 1, 2, 0, 1]]),
                         "labels": torch.tensor([[-100, 6, 7, -100, 9]])})
    assert padded["input_ids"] == flat["input_ids"] == [[5, 6, 7], [8, 9]]
    assert padded["tokens"] == flat["tokens"] == 5
    assert (padded["rows"], padded["sequences"], flat["rows"], flat["sequences"]) == (2, 2, 1, 2)
    assert flat["has_position_ids"] is True


def test_missing_objects_give_none_not_errors():
    class Empty:
        model = tokenizer = optimizer = lr_scheduler = train_dataloader = args = state = None

    audit = read_live_fields(Empty(), object(), {})
    json.dumps(audit)
    assert audit["optimizer"] is None and audit["first_batch_hash"] is None
    assert audit["notes"]


# ---- the LoRA weights as training starts, and how a step's loss is normalised -----------------------------
def _lora_config():
    from peft import LoraConfig

    return LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.05, target_modules=TARGETS, bias="none",
                      task_type="CAUSAL_LM")


@pytest.fixture(scope="module")
def reseeded(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("reseeded"), lora_seed=1)


@pytest.fixture(scope="module")
def micro_batch_mean(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("micro"), micro_batch_loss=True)


def test_lora_init_fingerprint_is_read_before_the_first_step(trained):
    from peft import get_peft_model
    from transformers import Qwen2ForCausalLM

    from harness.worker.live_fields.lora_init import lora_init_snapshot

    a = trained["audit"]
    assert a["lora_init_read_at"] == "train_begin" and a["lora_init_tensors"] == 2 * a["lora_module_count"]
    # peft's default init: B is zero when training starts; two steps later it is not
    assert a["lora_init_B_nonzero"] is False and a["lora_init_B_norm"] == 0.0 and a["lora_B_nonzero"] is True
    # The same construction again, untrained: the same fingerprint, to the bit.
    torch.manual_seed(0)
    again = get_peft_model(Qwen2ForCausalLM(trained["config"]), _lora_config())
    snapshot = lora_init_snapshot(again)
    assert snapshot["lora_init_hash"] == a["lora_init_hash"] and len(a["lora_init_hash"]) == 64
    assert snapshot["lora_init_A_norm"] == a["lora_init_A_norm"] != a["lora_A_norm"]  # A moved in training
    # The same numbers rounded through bf16 (trl's QLoRA cast, cast back up) are another initialisation.
    for name, param in again.named_parameters():
        if "lora_A" in name:
            param.data = param.data.to(torch.bfloat16).float()
    assert lora_init_snapshot(again)["lora_init_hash"] != a["lora_init_hash"]


def test_another_lora_seed_fails_the_strict_audit(trained, reseeded):
    from harness.audit.fairness import diff_point

    assert reseeded["audit"]["lora_init_hash"] != trained["audit"]["lora_init_hash"]
    diff = diff_point({"seeded": trained["audit"], "reseeded": reseeded["audit"]})
    assert [m["field"] for m in diff["mismatches"]] == ["lora_init_hash"] and diff["valid"] is False


def test_token_mean_over_the_step_is_observed(trained):
    a = trained["audit"]
    assert (a["loss_normalization"], a["loss_normalization_source"]) == ("step_token_mean", "observed")
    assert a["loss_normalization_flags"] == "step_token_mean"
    assert a["loss_normalization_mechanism"] == "num_items_in_batch passed to the model's forward"
    assert a["loss_normalization_trainer"]["model_accepts_loss_kwargs"] is True
    steps = a["loss_normalization_steps"]
    assert [s["step"] for s in steps] == [1, 2] and all(s["micro_batches"] == 2 for s in steps)
    # micro-batches of one step with different token counts: what tells the normalisations apart
    assert any(len(set(s["supervised"])) > 1 for s in steps)
    for s in steps:
        assert s["trainer_items"] == sum(s["supervised"])  # the loop counted the step's supervised tokens
        assert s["weight_x_step_tokens"] == pytest.approx([1.0, 1.0], rel=1e-4)


def test_micro_batch_mean_is_observed_and_fails_the_strict_audit(trained, micro_batch_mean):
    from harness.audit.fairness import diff_point

    b = micro_batch_mean["audit"]
    assert (b["loss_normalization"], b["loss_normalization_source"]) == ("micro_batch_mean", "observed")
    assert b["loss_normalization_flags"] == "micro_batch_mean"
    assert b["loss_normalization_mechanism"] == "no token count: each micro-batch's loss is its own mean"
    for s in b["loss_normalization_steps"]:
        # each token weighs 1 / (accumulation x its micro-batch's tokens): N / (2 n_i) times the token mean's
        expected = [sum(s["supervised"]) / (2 * n) for n in s["supervised"]]
        assert s["weight_x_step_tokens"] == pytest.approx(expected, rel=1e-4)
    assert b["lora_init_hash"] == trained["audit"]["lora_init_hash"]
    diff = diff_point({"token_mean": trained["audit"], "micro_batch_mean": b})
    assert [m["field"] for m in diff["mismatches"]] == ["loss_normalization"] and diff["valid"] is False


def test_what_the_trainer_does_wins_over_its_flags(tmp_path):
    # A compute_loss that drops the token count: the flags still read as the stock token mean, but each
    # micro-batch's loss is its own mean and nothing divides by the accumulation steps (the gradient is
    # twice the token mean's at 2 micro-batches). Only the observation says so.
    a = _train(tmp_path, drop_token_count=True)["audit"]
    assert a["loss_normalization_flags"] == "step_token_mean" and a["loss_normalization_source"] == "observed"
    assert a["loss_normalization"].startswith("other (token weight x step tokens: ")
    for s in a["loss_normalization_steps"]:
        assert s["weight_x_step_tokens"] == pytest.approx([sum(s["supervised"]) / n for n in s["supervised"]], rel=1e-4)
    assert any("observed other" in note and "flags read as step_token_mean" in note for note in a["notes"])
