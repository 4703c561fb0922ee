"""profile=memory on a GPU: a hand-built model whose weight, trainable-state and logits bytes are known.

Driven through the MemoryProfiler's own callback methods in a plain training loop (what the Trainer
calls), so the allocator's real history and snapshot are attributed by the real code. fp32 throughout:

    frozen:   Linear 1024x1024 (4 MiB) + LM head 8192x1024 (32 MiB)          = 36 MiB
    trainable: adapter 1024x1024 (4 MiB) + its grad (4) + AdamW's two states (8) = 16 MiB
              (the grad is zeroed in place, not freed: with ``set_to_none=True`` it would not exist while
              the loss is computed, where the peak falls, and the H200 run of session 5 measured 12 MiB)
    logits:   4096 tokens x 8192 x 4 B = 128 MiB (and cross-entropy's log-softmax of the same size)

Run three ways (harness/worker/model_marks.py): the norm module called (transformers' models: the head is
marked at its output), the norm applied by a function given the module as unsloth's fast forward does
(marked at the LM head's input), and a loss computed from ``lm_head.weight`` with no module called, as
unsloth's fused cross-entropy (not separable: the logits are in activations, ``logits_loss`` is None).
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest

MiB = 2**20
TOKENS, HIDDEN, VOCAB = 4096, 1024, 8192


@pytest.mark.gpu
@pytest.mark.parametrize("style,head_mark", [("module", "final norm output"), ("function", "LM head input"),
                                             ("fused", "none")])
def test_known_model_peak_is_attributed_to_its_known_bytes(tmp_path, style, head_mark):
    import torch
    from torch import nn
    from torch.nn import functional as F

    from harness.worker.memory_profiler import MemoryProfiler

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")

    class Known(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.frozen = nn.Linear(HIDDEN, HIDDEN, bias=False)
            self.adapter = nn.Linear(HIDDEN, HIDDEN, bias=False)
            self.norm = nn.LayerNorm(HIDDEN, elementwise_affine=False)  # the final norm the marks hook
            self.lm_head = nn.Linear(HIDDEN, VOCAB, bias=False)

        def get_output_embeddings(self) -> nn.Module:  # as every transformers causal LM has it
            return self.lm_head

        def forward(self, x, labels):
            h = self.frozen(x)
            h = h + self.adapter(h)
            if style == "module":
                return F.cross_entropy(self.lm_head(self.norm(h)), labels)
            h = F.layer_norm(h, self.norm.normalized_shape)  # the norm module is never called
            if style == "function":
                return F.cross_entropy(self.lm_head(h), labels)
            return F.cross_entropy(h @ self.lm_head.weight.t(), labels)  # the head module is never called

    torch.cuda.empty_cache()
    model = Known().cuda().train()
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("adapter"))
    opt = torch.optim.AdamW([model.adapter.weight], lr=1e-3)
    prof = MemoryProfiler({"max_entries": 100000, "trace_max_mb": 50}, tmp_path)
    assert prof.record.status == "ok"
    state = SimpleNamespace(global_step=0)
    prof.on_train_begin(None, state, None, model=model, optimizer=opt)
    for _ in range(3):
        prof.on_step_begin(None, state, None)
        x = torch.randn(TOKENS, HIDDEN, device="cuda")
        labels = torch.randint(0, VOCAB, (TOKENS,), device="cuda")
        model(x, labels).backward()
        prof.on_pre_optimizer_step(None, state, None)
        opt.step()
        opt.zero_grad(set_to_none=False)  # the grad's 4 MiB stay allocated through the next peak
        state.global_step += 1
        prof.on_step_end(None, state, None, optimizer=opt)
    measured, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    prof.on_train_end(None, state, None)
    record = prof.finish(measured, reserved)

    assert record.status == "ok", record.reason
    cats = record.categories
    assert record.head_mark == head_mark
    assert cats["frozen_weights"] == pytest.approx(36 * MiB, abs=2 * MiB)
    assert cats["trainable_state"] == pytest.approx(16 * MiB, abs=2 * MiB)
    assert record.detail["gradients"] == pytest.approx(4 * MiB, abs=MiB)
    if style == "fused":
        assert cats["logits_loss"] is None and record.not_separated == {"logits_loss": "activations"}
        assert cats["activations"] >= (128 + 16) * MiB and any("not separable" in n for n in record.notes)
    else:
        assert cats["logits_loss"] >= 128 * MiB and cats["activations"] >= 16 * MiB and record.not_separated is None
    assert sum(v for v in cats.values() if v is not None) == record.peak_allocated_bytes
    assert abs(record.coverage - 1) <= 0.05  # the categories add up to torch's own peak within 5%
    assert record.peak_phase in (("forward", "backward") if style == "fused" else ("loss", "backward"))
    assert record.snapshot_file
    assert (tmp_path / record.snapshot_file).stat().st_size > 0
