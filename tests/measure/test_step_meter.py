import time
from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerControl, TrainerState

from harness.worker.step_meter import StepMeter, torch_memory


class TinyModel(torch.nn.Module):
    """Stands in for the outermost model a trainer calls with a batch's kwargs."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(32, 4)

    def forward(self, input_ids=None, attention_mask=None, labels=None, position_ids=None):
        return self.emb(input_ids).sum()


ARGS = SimpleNamespace()


class FakeClock:
    """The StepMeter's clock, advanced only by the test: known-answer timing that no load can disturb."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _run_steps(meter, model, steps_batches, state, *, clock=None, step_s=0.0, logs=None):
    control = TrainerControl()
    meter.on_train_begin(ARGS, state, control, model=model)
    for i, batches in enumerate(steps_batches):
        meter.on_step_begin(ARGS, state, control)
        for batch in batches:
            model(**batch)
        if clock is not None:
            clock.advance(step_s[i] if isinstance(step_s, list) else step_s)
        state.global_step += 1
        meter.on_step_end(ARGS, state, control)
        meter.on_log(ARGS, state, control, logs=logs or {"loss": 2.0 / state.global_step, "grad_norm": 1.5,
                                                         "learning_rate": 1e-4})
    meter.on_train_end(ARGS, state, control)


PADDED_1 = {  # 2 rows, 7 real tokens; supervised after shift: row0 {5, 6}, row1 {3, 4} (its 9 at t=0 is never predicted)
    "input_ids": torch.tensor([[1, 2, 5, 6, 0], [1, 3, 4, 0, 0]]),
    "attention_mask": torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]]),
    "labels": torch.tensor([[-100, -100, 5, 6, -100], [9, 3, 4, -100, -100]]),
}
PADDED_2 = {  # 1 row, 4 real tokens, 3 supervised
    "input_ids": torch.tensor([[1, 1, 2, 3]]),
    "attention_mask": torch.tensor([[1, 1, 1, 1]]),
    "labels": torch.tensor([[-100, 1, 2, 3]]),
}
PACKED = {  # padding-free: 3 sequences packed in one row, no mask; supervised after shift: 1, 2, 4, 6
    "input_ids": torch.tensor([[1, 1, 2, 1, 4, 1, 6]]),
    "position_ids": torch.tensor([[0, 1, 2, 0, 1, 0, 1]]),
    "labels": torch.tensor([[-100, 1, 2, -100, 4, -100, 6]]),
}


def test_counts_padded_micro_batches_and_packed_batch():
    model = TinyModel().train()
    meter = StepMeter(warmup_steps=0)
    state = TrainerState()
    state.num_input_tokens_seen = 999
    control = TrainerControl()
    meter.on_train_begin(ARGS, state, control, model=model)
    meter.on_step_begin(ARGS, state, control)
    model(**PADDED_1)
    model(**PADDED_2)
    model.eval()
    model(**PADDED_1)  # an eval forward inside training: must not be counted
    model.train()
    state.global_step = 1
    meter.on_step_end(ARGS, state, control)
    meter.on_log(ARGS, state, control, logs={"loss": 3.0, "grad_norm": 0.5, "learning_rate": 2e-4,
                                             "num_input_tokens_seen": 11})
    meter.on_step_begin(ARGS, state, control)
    model(**PACKED)
    state.global_step = 2
    meter.on_step_end(ARGS, state, control)
    meter.on_train_end(ARGS, state, control)
    model(**PADDED_1)  # after training the hook is gone

    first, second = meter.records
    assert (first["tokens"], first["supervised_tokens"], first["samples"]) == (11, 7, 3)
    assert first["micro_batches"] == 2 and first["max_seq_len"] == 5
    assert (first["loss"], first["grad_norm"], first["lr"], first["num_input_tokens_seen"]) == (3.0, 0.5, 2e-4, 11)
    assert (second["tokens"], second["supervised_tokens"], second["samples"]) == (7, 4, 3)
    assert second["loss"] is None
    summary = meter.summary()
    assert summary["tokens"] == 18 and summary["supervised_tokens"] == 11 and summary["samples"] == 6
    assert summary["first_batch_shape"] == [2, 5]
    assert summary["framework_tokens_seen"] == 999
    assert summary["steps"] == 2 and summary["timed_steps"] == 2 and summary["note"] is None


def test_no_mask_no_positions_uses_pad_id():
    model = TinyModel().train()
    meter = StepMeter(warmup_steps=0, pad_token_id=0)
    batch = {"input_ids": torch.tensor([[1, 2, 0, 0], [3, 0, 0, 0]]), "labels": torch.tensor([[1, 2, -100, -100],
                                                                                              [3, -100, -100, -100]])}
    _run_steps(meter, model, [[batch]], TrainerState())
    rec = meter.records[0]
    assert (rec["tokens"], rec["supervised_tokens"], rec["samples"]) == (3, 1, 2)


def test_step_timing_known_clock_and_warmup_exclusion():
    model = TinyModel().train()
    clock = FakeClock()
    meter = StepMeter(warmup_steps=2, clock=clock)
    batch = {"input_ids": torch.ones(2, 8, dtype=torch.long), "attention_mask": torch.ones(2, 8, dtype=torch.long),
             "labels": torch.ones(2, 8, dtype=torch.long)}
    _run_steps(meter, model, [[batch]] * 7, TrainerState(), clock=clock, step_s=0.05)
    s = meter.summary()
    assert s["steps"] == 7 and s["timed_steps"] == 5 and s["warmup_steps"] == 2
    assert s["step_time_s"]["median"] == pytest.approx(0.05, rel=1e-9)
    assert s["step_time_s"]["p10"] <= s["step_time_s"]["median"] <= s["step_time_s"]["p90"]
    assert s["timed_tokens"] == 5 * 16 and s["timed_supervised_tokens"] == 5 * 14 and s["timed_samples"] == 10
    # rates are totals over the summed timed step times (not a mean of per-step rates)
    assert s["timed_time_s"] == pytest.approx(sum(r["time_s"] for r in s["log"][2:]))
    assert s["tokens_per_s"] == pytest.approx(80 / s["timed_time_s"])
    assert s["samples_per_s"] == pytest.approx(10 / s["timed_time_s"])
    assert s["tokens_per_s"] == pytest.approx(16 / 0.05, rel=1e-9)
    assert [r["step"] for r in s["log"]] == list(range(1, 8))
    assert s["log"][3]["loss"] == pytest.approx(0.5)
    assert all(r["t_end"] > 1e9 for r in s["log"])  # wall clock, comparable with the parent's timestamps


def test_step_time_includes_work_before_step_begin_but_not_evaluation():
    # HF's Trainer prefetches micro-batches before on_step_begin: that time belongs to the step.
    model = TinyModel().train()
    clock = FakeClock()
    meter = StepMeter(warmup_steps=0, clock=clock)
    state, control = TrainerState(), TrainerControl()
    meter.on_train_begin(ARGS, state, control, model=model)
    for step in (1, 2):
        clock.advance(0.03)  # "data loading"
        meter.on_step_begin(ARGS, state, control)
        clock.advance(0.02)
        state.global_step = step
        meter.on_step_end(ARGS, state, control)
        clock.advance(0.2)  # an in-loop evaluation ...
        meter.on_evaluate(ARGS, state, control)  # ... is not training time
    rec = meter.records[1]
    assert rec["time_s"] == pytest.approx(0.05, rel=1e-9)
    assert rec["compute_s"] == pytest.approx(0.02, rel=1e-9)


def test_default_clock_is_the_wall_clock_read_around_the_same_work():
    # The real clock, checked against a reference clock read around the same steps: on a loaded machine
    # both see the same delays, so the comparison holds whatever the load.
    model = TinyModel().train()
    meter = StepMeter(warmup_steps=0)
    batch = {"input_ids": torch.ones(1, 4, dtype=torch.long), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    before = time.perf_counter()
    _run_steps(meter, model, [[batch]] * 3, TrainerState())
    after = time.perf_counter()
    s = meter.summary()
    assert 0 < s["timed_time_s"] <= after - before


def _uniform_batch(tokens: int) -> dict:
    return {"input_ids": torch.ones(1, tokens, dtype=torch.long), "attention_mask": torch.ones(1, tokens, dtype=torch.long)}


def test_timing_window_is_fixed_and_a_slow_timed_step_of_the_first_half_is_unsettled():
    # 12 steps: steps 1-2 are the fixed warm-up; step 4 is a compile-like step (4x slower per token): timing
    # still starts after step 2 (every repeat and framework is timed over the same steps), and step 4 is
    # named as unsettled; step 11 (second half) is slow too, stays timed and is listed, but is not a
    # warm-up effect.
    model = TinyModel().train()
    clock = FakeClock()
    meter = StepMeter(warmup_steps=2, settle_factor=1.5, clock=clock)
    times = [0.4, 0.4, 0.1, 0.4, 0.1, 0.1, 0.11, 0.1, 0.1, 0.1, 0.3, 0.1]
    _run_steps(meter, model, [[_uniform_batch(8)]] * 12, TrainerState(), clock=clock, step_s=times)
    s = meter.summary()
    w = s["warmup"]
    assert w["slow_steps"] == [1, 2, 4, 11] and w["unsettled_timed_steps"] == [4] and w["settled"] is False
    assert w["timing_starts_after_step"] == 2 and s["warmup_steps"] == 2
    assert s["timed_steps"] == 10
    assert s["timed_time_s"] == pytest.approx(sum(times[2:]), rel=1e-9)
    # A longer warm-up covers it: settled.
    meter = StepMeter(warmup_steps=4, settle_factor=1.5, clock=(clock := FakeClock()))
    _run_steps(meter, model, [[_uniform_batch(8)]] * 12, TrainerState(), clock=clock, step_s=times)
    assert meter.summary()["warmup"]["settled"] is True and meter.summary()["warmup"]["unsettled_timed_steps"] == []
    # Per token, not per step: a step twice as long with twice the tokens is not slow.
    meter = StepMeter(warmup_steps=0, settle_factor=1.5, clock=(clock := FakeClock()))
    _run_steps(meter, model, [[_uniform_batch(16)], [_uniform_batch(8)]] * 3, TrainerState(), clock=clock,
               step_s=[0.2, 0.1] * 3)
    assert meter.summary()["warmup"]["slow_steps"] == [] and meter.summary()["timed_steps"] == 6
    assert meter.summary()["warmup"]["steady_fixed_s"] == pytest.approx(0.0, abs=1e-12)


def _batch_of(rows: int, width: int) -> dict:
    return {"input_ids": torch.ones(rows, width, dtype=torch.long), "attention_mask": torch.ones(rows, width, dtype=torch.long)}


def test_settle_criterion_allows_for_the_fixed_cost_of_a_step():
    # The H200 7B shape: 0.39 s a step plus 86 us per padded token. A small step is twice as slow per token
    # as a full one but on the line, so not slow; a compile-like step (3x the line) in the first half is.
    model = TinyModel().train()
    clock = FakeClock()
    meter = StepMeter(warmup_steps=1, settle_factor=1.5, clock=clock)
    widths = [32, 8, 32, 16, 8, 32, 16, 8, 32, 16, 8, 32]  # padded tokens = 4 rows x width
    line = [0.39 + 86e-6 * 1000 * 4 * w for w in widths]  # x1000: the fake batches are small, the times are not
    times = list(line)
    times[2] *= 3.0
    _run_steps(meter, model, [[_batch_of(4, w)] for w in widths], TrainerState(), clock=clock, step_s=times)
    w = meter.summary()["warmup"]
    assert w["slow_steps"] == [3] and w["unsettled_timed_steps"] == [3] and w["timing_starts_after_step"] == 1
    assert w["steady_fixed_s"] == pytest.approx(0.39) and w["steady_s_per_token"] == pytest.approx(0.086)


def test_settle_criterion_off_by_default():
    model = TinyModel().train()
    clock = FakeClock()
    meter = StepMeter(warmup_steps=1, clock=clock)
    _run_steps(meter, model, [[_uniform_batch(8)]] * 6, TrainerState(), clock=clock, step_s=[0.1, 0.1, 0.9, 0.1, 0.1, 0.1])
    s = meter.summary()
    assert s["timed_steps"] == 5 and s["warmup"]["settle_factor"] is None and s["warmup"]["slow_steps"] == []
    assert s["warmup"]["settled"] is None


def test_short_run_uses_all_steps_with_note():
    model = TinyModel().train()
    meter = StepMeter(warmup_steps=5)
    batch = {"input_ids": torch.ones(1, 4, dtype=torch.long)}
    _run_steps(meter, model, [[batch]] * 2, TrainerState())
    s = meter.summary()
    assert s["timed_steps"] == 2 and s["tokens"] == 8 and "warm" in s["note"]
    assert "no labels" in s["note"]


def test_torch_memory_on_cpu():
    if torch.cuda.is_available():
        pytest.skip("CPU behaviour")
    assert torch_memory() == {"torch_max_allocated_bytes": None, "torch_max_reserved_bytes": None}


def test_allocator_calls_per_step(monkeypatch):
    # A step's trips to the driver for memory: the difference of the allocator's lifetime counters between
    # its begin and its end (faked here: no CUDA on CPU).
    import harness.worker.step_meter as step_meter

    calls = iter([{"cuda_mallocs": 5, "cuda_frees": 0, "alloc_retries": 0},
                  {"cuda_mallocs": 5, "cuda_frees": 0, "alloc_retries": 0},   # step 1: none
                  {"cuda_mallocs": 5, "cuda_frees": 0, "alloc_retries": 0},
                  {"cuda_mallocs": 8, "cuda_frees": 2, "alloc_retries": 1}])  # step 2: to the driver
    monkeypatch.setattr(step_meter, "allocator_counters", lambda: next(calls))
    meter = StepMeter(warmup_steps=0, clock=FakeClock())
    _run_steps(meter, TinyModel().train(), [[PADDED_1]] * 2, TrainerState())
    first, second = meter.records
    assert (first["cuda_mallocs"], first["cuda_frees"], first["alloc_retries"]) == (0, 0, 0)
    assert (second["cuda_mallocs"], second["cuda_frees"], second["alloc_retries"]) == (3, 2, 1)


def test_no_allocator_counters_on_cpu():
    meter = StepMeter(warmup_steps=0, clock=FakeClock())
    _run_steps(meter, TinyModel().train(), [[PADDED_1]], TrainerState())
    assert "cuda_mallocs" not in meter.records[0] and meter.records[0]["time_s"] >= 0
