"""The same-loss control's compute_loss on a toy causal LM (no framework, no training): the loss is
transformers' ForCausalLMLoss with Trainer.compute_loss's accounting, the labels reach the hooks that count
them but never the forward, and what it cannot do is refused as 'unavailable', never a silent native run."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from harness.frameworks.adapter import FrameworkUnavailable
from harness.worker.common_loss import CommonLoss

VOCAB, IGNORE = 11, -100


class Toy(nn.Module):
    def __init__(self, logits: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.lm_head = nn.Embedding(VOCAB, 6), nn.Linear(6, VOCAB, bias=False)
        self.logits, self.forward_labels = logits, "never called"

    def forward(self, input_ids, attention_mask=None, labels=None, use_cache=None):
        self.forward_labels = labels
        return {"logits": self.lm_head(self.emb(input_ids)) if self.logits else None}


def _trainer(accepts: bool = True, processes: int = 2) -> SimpleNamespace:
    return SimpleNamespace(model_accepts_loss_kwargs=accepts,
                           args=SimpleNamespace(average_tokens_across_devices=True, n_gpu=1),
                           accelerator=SimpleNamespace(num_processes=processes, parallelism_config=None))


def _batch() -> dict:
    ids = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    labels = torch.tensor([[IGNORE, IGNORE, 3, 4, 5], [IGNORE, 7, 8, IGNORE, IGNORE]])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def _summed_ce(model: Toy, batch: dict) -> torch.Tensor:
    logits = model.lm_head(model.emb(batch["input_ids"])).float()
    return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), batch["labels"][:, 1:].reshape(-1),
                                       ignore_index=IGNORE, reduction="sum")


def test_the_loss_is_token_summed_over_num_items_scaled_by_the_processes_and_the_labels_skip_the_forward():
    model, batch, common, seen = Toy(), _batch(), CommonLoss(), []
    model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw.get("labels")), with_kwargs=True)  # the StepMeter's
    common.attach(model)  # after it, as at train begin
    trainer = _trainer()
    loss = common.compute_loss(trainer, model, batch, num_items_in_batch=torch.tensor(10))
    assert seen[0] is batch["labels"] and model.forward_labels is None
    assert loss.item() == pytest.approx((_summed_ce(model, batch) / 10 * 2).item(), rel=1e-6)
    assert (common.calls, common.logits_dtype, common.loss_dtype) == (1, "float32", "float32")
    assert common.loss_function == "transformers.loss.loss_utils.ForCausalLMLoss"


def test_a_trainer_whose_model_takes_no_loss_kwargs_gets_the_micro_batch_mean_as_transformers_gives_it():
    model, batch, common = Toy(), _batch(), CommonLoss()
    loss = common.compute_loss(_trainer(accepts=False), model, batch, num_items_in_batch=torch.tensor(10))
    assert model.forward_labels is None  # not attached: the labels are simply left out of the call
    assert loss.item() == pytest.approx((_summed_ce(model, batch) / 5).item(), rel=1e-6)  # 5 supervised after the shift


def test_what_the_common_loss_cannot_do_is_refused_as_unavailable():
    common = CommonLoss()
    with pytest.raises(FrameworkUnavailable, match="returned no full logits"):
        common.compute_loss(_trainer(), Toy(logits=False), _batch())
    model = Toy()
    common.attach(nn.Linear(1, 1))  # on another module: its hook never runs, the labels would reach the forward
    with pytest.raises(FrameworkUnavailable, match="labels reached the model's forward"):
        common.compute_loss(_trainer(), model, _batch())
    with pytest.raises(FrameworkUnavailable, match="no labels"):
        CommonLoss().compute_loss(_trainer(), Toy(), {"input_ids": torch.tensor([[1, 2]])})
