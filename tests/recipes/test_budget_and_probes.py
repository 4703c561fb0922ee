"""The token budget of a packing recipe (known answers: docs/recipes.md 3.5's worked example, the tiny data
through the real tokenizer) and the read-back of features from live objects (block masks, Liger, collators)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from harness.data.budget import BUDGET_TOLERANCE, budget_check, budget_from_counts, token_budget
from harness.data.tokenize import IGNORE_INDEX, tokenize_record
from harness.hub import REPO_ROOT
from harness.worker.live_fields.batches import batch_record, block_mask_segments
from harness.worker.live_fields.recipe_probes import PROBES, probe_features

THROUGHPUT_7B = {"max_steps": 48, "batch_size": 16, "grad_accum": 1, "max_length": 1024}


def test_budget_formula_on_the_worked_example():
    # 2000 records whose means are the medical mirror's: 186.7 tokens, 131.5 supervised
    lengths, supervised = [1867] * 10 + [0] * 90, [1315] * 10 + [0] * 90
    budget = budget_from_counts(lengths, supervised, THROUGHPUT_7B)
    assert budget["mean_tokens"] == pytest.approx(186.7) and budget["mean_supervised"] == pytest.approx(131.5)
    assert budget["target_supervised"] == pytest.approx(48 * 16 * 131.5)  # 100,992
    assert budget["rows_per_step"] == 3  # round(16 x 186.7 / 1024) = round(2.92)
    assert budget["steps"] == math.ceil(48 * 16 * 131.5 / (3 * 1024 * 131.5 / 186.7)) == 47
    two_ranks = budget_from_counts(lengths, supervised, THROUGHPUT_7B, world_size=2)
    assert two_ranks["target_supervised"] == 2 * budget["target_supervised"] and two_ranks["steps"] == 47


def test_budget_of_the_tiny_data_with_the_real_tokenizer():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(REPO_ROOT / "harness/assets/tiny"))
    records = [r for r in _tiny_records()]
    train = {"max_steps": 12, "batch_size": 8, "grad_accum": 1, "max_length": 1024}
    budget = token_budget(records, tokenizer, train)
    tokens = [tokenize_record(tokenizer, r, 1024) for r in records]
    s_mean = sum(sum(x != IGNORE_INDEX for x in t["labels"]) for t in tokens) / len(tokens)
    t_mean = sum(len(t["input_ids"]) for t in tokens) / len(tokens)
    assert budget["records"] == len(records) and budget["mean_supervised"] == pytest.approx(s_mean)
    assert budget["target_supervised"] == pytest.approx(12 * 8 * s_mean)
    assert budget["rows_per_step"] == max(1, round(8 * t_mean / 1024))


def _tiny_records():
    import json

    path = REPO_ROOT / "harness/assets/tiny/medical_train.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_budget_check():
    budget = {"target_supervised": 1000.0}
    assert budget_check(budget, 1000 + int(1000 * BUDGET_TOLERANCE))["within"] is True
    missed = budget_check(budget, 959)
    assert missed["within"] is False and missed["relative_miss"] == pytest.approx(-0.041)
    assert budget_check(budget, None)["within"] is None


def _block_mask(segments: list[int], additive: bool = True) -> torch.Tensor:
    """LLaMA-Factory's prepare_4d_attention_mask of one row of segment ids (0: padding)."""
    ids = torch.tensor([segments])
    n = len(segments)
    allowed = (ids.unsqueeze(1).unsqueeze(2) == ids.unsqueeze(1).unsqueeze(3)) & (ids != 0).unsqueeze(1).unsqueeze(2) \
        & torch.tril(torch.ones(n, n, dtype=torch.bool))
    return torch.where(allowed, 0.0, torch.finfo(torch.float32).min) if additive else allowed


@pytest.mark.parametrize("additive", [True, False])
def test_block_diagonal_masks_split_packed_rows_into_their_sequences(additive):
    mask = _block_mask([1, 1, 2, 2, 2, 3, 0, 0], additive)
    keep, starts = block_mask_segments(mask)
    assert keep.tolist() == [[True] * 6 + [False] * 2] and starts.tolist() == [[1, 0, 1, 0, 0, 1, 0, 0]]
    ids = torch.tensor([[11, 12, 21, 22, 23, 31, 0, 0]])
    labels = torch.tensor([[-100, 12, -100, 22, 23, -100, -100, -100]])
    record = batch_record({"input_ids": ids, "attention_mask": mask, "labels": labels}, pad_token_id=0)
    assert record["input_ids"] == [[11, 12], [21, 22, 23], [31]] and record["tokens"] == 6
    assert record["sequences"] == 3 and record["rows"] == 1 and record["labels_supervised"] == 3


def test_step_meter_counts_tokens_and_samples_of_packed_rows():
    from harness.worker.step_meter import StepMeter

    meter = StepMeter(warmup_steps=0)
    meter.pad_token_id = 0
    mask = _block_mask([1, 1, 2, 2, 2, 0])
    meter.count_batch({"input_ids": torch.tensor([[5, 6, 7, 8, 9, 0]]), "attention_mask": mask,
                       "labels": torch.tensor([[-100, 6, -100, 8, 9, -100]])})
    assert meter._read_counts() == (5, 3, 2)


class LigerRMSNorm(torch.nn.Module):
    pass


def _live(**kw):
    return SimpleNamespace(model=kw.get("model"), args=kw.get("args"), train_dataloader=kw.get("dataloader"))


def test_liger_probe_sees_swapped_classes_and_renamed_instances():
    plain = torch.nn.Sequential(torch.nn.Linear(2, 2))
    assert PROBES["liger"](_live(model=plain), {})[0] is False
    swapped = torch.nn.Sequential(torch.nn.Linear(2, 2), LigerRMSNorm())
    active, evidence = PROBES["liger"](_live(model=swapped), {})
    assert active is True and "LigerRMSNorm" in evidence
    renamed = torch.nn.Sequential(torch.nn.Linear(2, 2))
    renamed[0]._get_name = lambda: "LigerSwiGLUMLP"  # what liger's _apply_liger_kernel_to_instance leaves
    assert PROBES["liger"](_live(model=renamed), {})[0] is True


def test_probes_read_the_collator_and_the_audit_never_the_config():
    collator = SimpleNamespace(pad_to_multiple_of=None, neat_packing=True, block_diag_attn=True)
    live = _live(dataloader=SimpleNamespace(collate_fn=collator), args=SimpleNamespace(padding_free=True, packing=False))
    assert PROBES["no_pad_multiple"](live, {})[0] is True
    assert PROBES["neat_packing"](live, {"batch_packed": True})[0] is True
    assert PROBES["neat_packing"](live, {"batch_packed": False})[0] is False
    # args say padding-free, the batches do not: not seen
    assert PROBES["padding_free"](live, {"batch_padding_free": False})[0] is False
    assert PROBES["fused_adamw"](live, {"optimizer_options": {"fused": None}})[0] is None
    assert PROBES["bf16_adapters"](live, {"trainable_dtype": "float32"})[0] is False


def test_probe_features_turns_applied_into_active_or_not_seen():
    plan = [{"id": "padding_free", "status": "applied"}, {"id": "liger", "status": "unavailable", "reason": "r"},
            {"id": "no_such_probe", "status": "applied"}, {"id": "fused_adamw", "status": "applied"}]
    out = probe_features(plan, _live(args=SimpleNamespace(padding_free=True)),
                         {"batch_padding_free": True, "optimizer_options": {"fused": False}})
    assert [(f["id"], f["status"]) for f in out] == [("padding_free", "active"), ("liger", "unavailable"),
                                                     ("no_such_probe", "not checked"), ("fused_adamw", "not seen")]
    assert all("evidence" in f for f in out if f["status"] != "unavailable")


def test_a_packed_row_padded_with_a_segment_of_its_own_counts_no_padding():
    """axolotl's multipack collator pads a packed row with pad ids, labels -100 and position_ids range(remainder):
    a segment of padding, which is neither tokens nor a sample (the framework's own count agrees)."""
    from harness.worker.step_meter import StepMeter

    pad = 0
    ids = torch.tensor([[5, 6, 7, 8, 9, pad, pad, pad], [4, 3, 2, pad, pad, pad, pad, pad]])
    pos = torch.tensor([[0, 1, 0, 1, 2, 0, 1, 2], [0, 1, 2, 0, 1, 2, 3, 4]])
    labels = torch.tensor([[-100, 6, -100, 8, 9, -100, -100, -100], [-100, 3, 2, -100, -100, -100, -100, -100]])
    meter = StepMeter(warmup_steps=0)
    meter.pad_token_id = pad
    meter.count_batch({"input_ids": ids, "position_ids": pos, "labels": labels})
    assert meter._read_counts() == (8, 5, 3)  # tokens, supervised (shifted), samples
    record = batch_record({"input_ids": ids, "position_ids": pos, "labels": labels}, pad_token_id=pad)
    assert record["input_ids"] == [[5, 6], [7, 8, 9], [4, 3, 2]] and record["tokens"] == 8 and record["sequences"] == 3
    # padding-free rows with no pad id in them count as before: every token, one sample per restart
    free = StepMeter(warmup_steps=0)
    free.pad_token_id = pad
    free.count_batch({"input_ids": ids[:1, :5], "position_ids": pos[:1, :5], "labels": labels[:1, :5]})
    assert free._read_counts() == (5, 3, 2)


class MultipackBatchSampler:  # the class name the multipack probe reads (under accelerate's shard wrapper)
    pass


def test_multipack_probe_needs_its_sampler_and_packed_batches():
    args = SimpleNamespace(sample_packing=True, multipack_real_batches=True, sample_packing_drop_attention_mask=True)
    shard = SimpleNamespace(batch_sampler=MultipackBatchSampler())
    live = _live(args=args, dataloader=SimpleNamespace(batch_sampler=shard, collate_fn=None))
    assert PROBES["multipack"](live, {"batch_packed": True})[0] is True
    assert PROBES["multipack"](live, {"batch_packed": False})[0] is False
    assert PROBES["multipack"](live, {})[0] is None
    plain = _live(args=args, dataloader=SimpleNamespace(batch_sampler=SimpleNamespace(), collate_fn=None))
    assert PROBES["multipack"](plain, {"batch_packed": True})[0] is False


def test_lora_kernels_probe_sees_kernels_bound_to_instances_only():
    import types

    def apply_lora_mlp_swiglu(self, x):  # what the kernels bind: a layer's mlp.forward
        return x

    def apply_lora_qkv(self, x):
        return x, x, x

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    assert PROBES["lora_kernels"](_live(model=model), {})[0] is False
    model[0].forward = types.MethodType(apply_lora_mlp_swiglu, model[0])
    model[1].apply_qkv = types.MethodType(apply_lora_qkv, model[1])
    active, evidence = PROBES["lora_kernels"](_live(model=model), {})
    assert active is True and "apply_lora_mlp_swiglu': 1" in evidence and "apply_lora_qkv': 1" in evidence


def test_sdpa_varlen_probe_reads_the_registered_attention_function():
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    original = ALL_ATTENTION_FUNCTIONS["sdpa"]
    assert PROBES["sdpa_varlen"](_live(), {"attn_implementation": "sdpa"})[0] is False

    def sdpa_varlen_forward(*args, **kwargs):
        return original(*args, **kwargs)

    ALL_ATTENTION_FUNCTIONS.register("sdpa", sdpa_varlen_forward)
    try:
        active, evidence = PROBES["sdpa_varlen"](_live(), {"attn_implementation": "sdpa"})
        assert active is True and "sdpa_varlen_forward" in evidence
        assert PROBES["sdpa_varlen"](_live(), {"attn_implementation": "eager"})[0] is False
    finally:
        ALL_ATTENTION_FUNCTIONS.register("sdpa", original)


def test_tf32_and_dataloader_worker_probes_read_the_process_and_the_dataloader():
    assert PROBES["tf32"](_live(args=SimpleNamespace(tf32=False)), {})[0] is torch.backends.cuda.matmul.allow_tf32
    workers = SimpleNamespace(num_workers=1, pin_memory=True, prefetch_factor=256)
    assert PROBES["dataloader_workers"](_live(dataloader=workers), {})[0] is True
    assert PROBES["dataloader_workers"](_live(dataloader=SimpleNamespace(num_workers=0)), {})[0] is False
    assert PROBES["dataloader_workers"](_live(), {})[0] is None


def test_packing_fill_is_best_fit_decreasing():
    from harness.data.budget import packing_fill

    assert packing_fill([1024] * 4, 1024) == 1.0
    assert packing_fill([624, 624, 400, 400], 1024) == 1.0  # 624 + 400 twice
    assert packing_fill([700, 700, 700], 1024) == pytest.approx(700 / 1024)  # no two share a row
    assert packing_fill([2000, 0, 512, 512], 1024) == 1.0  # cut at the row; empty records take no room
    assert packing_fill([], 1024) == 1.0


def test_a_budget_counts_the_rows_records_cannot_fill():
    # 3 records of 700 tokens a step's worth, rows of 1024: one record a row, so 3 rows where a full fill needs 2
    budget = budget_from_counts([700] * 30, [350] * 30, {"max_steps": 10, "batch_size": 3, "grad_accum": 1,
                                                         "max_length": 1024})
    assert budget["fill"] == pytest.approx(700 / 1024) and budget["rows_per_step"] == 2
    # 10 x 3 x 350 supervised = 10,500; a step: 2 rows x 1024 x 0.684 x 0.5 = 700 -> 15 steps
    assert budget["steps"] == 15 and "fill 0.684" in budget["formula"]


def test_a_whole_steps_overshoot_is_never_a_miss():
    # 14 steps: rounding N up can alone overshoot S* by up to 1/14 = 7%
    budget = {"target_supervised": 1600, "steps": 14}
    assert budget_check(budget, 1680)["within"] is True and budget_check(budget, 1680)["tolerance"] == 1 / 14
    assert budget_check(budget, 1760)["within"] is False  # +10%
    assert budget_check({"target_supervised": 100_000, "steps": 47}, 103_500)["within"] is False  # 3% at N=47
