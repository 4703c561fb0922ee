"""Known answers of the loss-normalisation reading (harness/worker/live_fields/loss_normalization.py) where no CPU
run reaches: two ranks that do not gather the token count, steps that cannot tell two normalisations apart, a
forward that returns no loss. Each micro-batch below is written the way transformers computes it (numbers worked
out by hand in the comments); real runs of every normalisation the CPU can make are in test_live_fields.py,
test_scale.py (two gloo ranks), test_formats_cpu.py and test_frameworks_cpu.py."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.worker.live_fields.loss_normalization import read_loss_normalization

STOCK = {"model_accepts_loss_kwargs": True, "compute_loss_func": None}


class Probe:
    """What LossProbe.observed() returns after training, one step of the given micro-batches."""

    def __init__(self, micro_batches: list[dict], reading: dict = STOCK) -> None:
        self.not_started, self.trainer_reading = None, reading
        self._steps = [{"step": 1, "micro_batches": [{"accelerate_divisor": 1, "forwards": 1, "backwards": 1, **m}
                                                      for m in micro_batches]}]

    def observed(self) -> list[dict]:
        return self._steps


def _read(micro_batches: list[dict], *, world: int = 1, average: bool = True, global_tokens: int | None = None,
          reading: dict = STOCK) -> tuple[dict, list[str]]:
    live = SimpleNamespace(loss_probe=Probe(micro_batches, reading),
                           args=SimpleNamespace(world_size=world, average_tokens_across_devices=average))
    meter = SimpleNamespace(records=[{"step": 1, "supervised_tokens": global_tokens}] if global_tokens else [])
    out: dict = {}
    notes: list[str] = []
    read_loss_normalization(live, meter, out, notes)
    return out, notes


# Rank 0 of two: micro-batches of 30 and 10 supervised tokens whose token-loss sums are 60 and 15; the other rank
# holds 60 tokens, so the step has 100.
def test_two_ranks_gathering_the_token_count_weigh_every_token_alike():
    # forward loss S / 100 (the gathered count), times 2 ranks in compute_loss: 1.2 and 0.3
    micro = [{"trainer_items": 100.0, "supervised": 30.0, "forward_items": 100.0, "forward_loss": 0.6,
              "backward_loss": 1.2},
             {"trainer_items": 100.0, "supervised": 10.0, "forward_items": 100.0, "forward_loss": 0.15,
              "backward_loss": 0.3}]
    out, _ = _read(micro, world=2, global_tokens=100)
    assert (out["loss_normalization"], out["loss_normalization_flags"]) == ("step_token_mean", "step_token_mean")
    assert out["loss_normalization_steps"][0]["weight_x_step_tokens"] == [1.0, 1.0]


def test_two_ranks_each_with_its_own_token_mean():
    # average_tokens_across_devices off: S / 40 (this rank's tokens), no factor of 2; DDP then halves it
    micro = [{"trainer_items": 40.0, "supervised": 30.0, "forward_items": 40.0, "forward_loss": 1.5,
              "backward_loss": 1.5},
             {"trainer_items": 40.0, "supervised": 10.0, "forward_items": 40.0, "forward_loss": 0.375,
              "backward_loss": 0.375}]
    out, _ = _read(micro, world=2, average=False, global_tokens=100)
    assert (out["loss_normalization"], out["loss_normalization_flags"]) == ("rank_token_mean", "rank_token_mean")
    assert out["loss_normalization_steps"][0]["weight_x_step_tokens"] == [1.25, 1.25]  # 100 / (2 x 40)


def test_two_ranks_averaging_micro_batch_means():
    # no count: S / n (2.0 and 1.5), divided by the 2 accumulation steps
    micro = [{"trainer_items": None, "supervised": 30.0, "forward_items": None, "forward_loss": 2.0,
              "backward_loss": 1.0},
             {"trainer_items": None, "supervised": 10.0, "forward_items": None, "forward_loss": 1.5,
              "backward_loss": 0.75}]
    out, _ = _read(micro, world=2, global_tokens=100,
                   reading={"model_accepts_loss_kwargs": False, "compute_loss_func": None})
    assert (out["loss_normalization"], out["loss_normalization_flags"]) == ("micro_batch_mean", "micro_batch_mean")
    assert out["loss_normalization_steps"][0]["weight_x_step_tokens"] == pytest.approx([100 / 120, 100 / 40])


def test_micro_batches_of_equal_tokens_cannot_tell_the_two_means_apart():
    # one rank, 20 + 20 tokens: S / 40 == (S / 20) / 2, whichever the trainer did
    micro = [{"trainer_items": 40.0, "supervised": 20.0, "forward_items": 40.0, "forward_loss": 0.5,
              "backward_loss": 0.5}] * 2
    out, notes = _read(micro)
    assert out["loss_normalization"] == "step_token_mean|micro_batch_mean"
    assert any("fit step_token_mean and micro_batch_mean alike" in n for n in notes)


def test_a_forward_without_a_loss_falls_back_on_the_trainer_flags():
    micro = [{"trainer_items": 40.0, "supervised": 30.0, "forward_items": None, "forward_loss": None,
              "backward_loss": 0.9},
             {"trainer_items": 40.0, "supervised": 10.0, "forward_items": None, "forward_loss": None,
              "backward_loss": 0.2}]
    out, notes = _read(micro)
    assert (out["loss_normalization"], out["loss_normalization_source"]) == ("step_token_mean", "trainer flags")
    assert any("step 1 not observed (the forward returned no loss)" in n for n in notes)


def test_no_trainer_on_the_stack_is_unknown_not_a_guess():
    live = SimpleNamespace(loss_probe=SimpleNamespace(not_started="no transformers.Trainer on the stack of "
                                                                  "on_train_begin"), args=None)
    out: dict = {}
    notes: list[str] = []
    read_loss_normalization(live, SimpleNamespace(), out, notes)
    assert out["loss_normalization"] is None and "no transformers.Trainer" in notes[0]
