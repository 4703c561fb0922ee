"""Per-step throughput and timing measured inside the training process, from the real batches.

One ``TrainerCallback`` serves trl's SFTTrainer, unsloth and LLaMA-Factory (all run HF's Trainer loop),
so every framework is measured by the same code instead of trusting each framework's own counters
(which differ: some count padding, some count nothing). The framework's ``num_input_tokens_seen`` is
kept beside ours as a cross-check.

What is counted, per micro-batch, by a forward pre-hook on the outermost model the trainer calls
(only while ``model.training``, so evaluation forwards are not counted; gradient-checkpoint recompute
runs inside layers, not through the outer model, so it is not counted twice):

* tokens: non-padding tokens entering the model = ``attention_mask.sum()`` when a 2-D mask is passed;
  padding-free / packed batches pass ``position_ids`` and no mask: every token is real, ``input_ids.numel()``,
  except a segment of pad ids only (axolotl pads a packed row with one: ``padding_segments``);
  with neither (and a known pad id) ``(input_ids != pad_token_id).sum()``.
* supervised tokens: tokens whose prediction enters the loss *after the causal shift*, i.e.
  ``labels[..., 1:] != -100`` (the label of a row's first token is never predicted). When the trainer
  passes ``shift_labels`` (already shifted) we count ``shift_labels != -100`` instead.
* samples: rows; for a packed batch (``position_ids`` given) sequences = ``(position_ids == 0).sum()``, less
  the padding segments.

Counts are accumulated as device tensors and read with one ``.item()`` per optimizer step: a host
sync per micro-batch would itself slow the run we are measuring.

Step time: HF's Trainer fetches all micro-batches of a step *before* ``on_step_begin``, so begin→end
would hide data loading. ``time_s`` is therefore the wall time from the previous step's end (or train
begin, or the end of an in-loop evaluation/save, which are not training work) to this step's end,
with ``torch.cuda.synchronize()`` at both ends; ``compute_s`` (begin→end) is kept for diagnosis.

Warm-up: the first ``warmup_steps`` steps are never timed, and timing always starts right after them:
every repeat and every framework of a sweep point is timed over the very same steps, hence the same
batches (step lengths differ by up to 5x, so a window that moved by a few steps would change tokens/s by
more than the differences we measure; session 3's settle rule moved one repeat's window by 14 steps and
that alone made a 2-4% spread). With ``settle_factor`` (``train.settle_factor``, set by the GPU
throughput suites) the warm-up is *verified*: the steady state is a line fitted to the run's second
half, step time against padded tokens (rows x padded width: what the GPU computes), robustly (Theil-Sen:
the median of pairwise slopes): a step costs a fixed launch/Python part plus a part per token (7B LoRA,
batch 16 on an H200: ~0.39 s + 86 us per padded token, so a 3,200-token step takes 0.67 s and a
16,384-token step 1.81 s; per token the small step looks twice as slow while it is on the line). A step is
"slow" when it takes more than ``settle_factor`` (1.5 in those suites) times the line's prediction for
its tokens; compilation (unsloth, torch.compile), kernel autotuning and allocator growth make steps
2-10x slower. A slow step of the first half after the warm-up is listed in ``unsettled_timed_steps`` and
fails the result's ``timing_settled`` check (the fix is a longer ``train.measure_warmup_steps``, for all
frameworks alike). A slow step in the second half is timed and listed. A compilation in any timed step (a
recompile for a new shape), read from dynamo's own timings (host_pauses.py), fails the check
``no_compile_in_timed_steps``: the figure then includes compilation, which issue 13 keeps out of it.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import torch
from transformers import TrainerCallback

from harness.worker.host_pauses import HostPauseMeter
from harness.worker.live_fields.batches import batch_record, block_mask_segments, padding_segments
from harness.worker.torch_memory import allocator_counters, sync_cuda, torch_memory  # noqa: F401  (torch_memory: the worker's)
from harness.worker.train_summary import settle_evidence, train_summary

IGNORE_INDEX = -100


# For the fairness audit: the token ids of the first micro-batches as the model saw them. Copying them
# to the host is a sync, so only these few (inside the warm-up steps) are kept.
FIRST_BATCHES_KEPT = 8


class StepMeter(TrainerCallback):
    """Counts tokens / supervised tokens / samples from real batches and times every optimizer step.

    ``warmup_steps`` first steps are excluded from the throughput figures (compilation, allocator
    growth, cuDNN autotuning). ``pad_token_id`` is only used for batches with no attention mask: with no
    position ids either, and for the padding segments of packed rows (falls back to the trainer's
    ``processing_class.pad_token_id``).
    """

    def __init__(self, warmup_steps: int, pad_token_id: int | None = None, settle_factor: float | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.warmup_steps = int(warmup_steps)
        self.settle_factor = settle_factor
        # Injected in tests: a known-answer timing test must not depend on how busy the machine is.
        self._clock = clock
        self.pad_token_id = pad_token_id
        self.records: list[dict[str, Any]] = []
        self.first_batch_shape: list[int] | None = None
        self.first_batches: list[dict[str, Any]] = []
        self.train_memory_per_rank: list[dict[str, Any]] | None = None  # set at train end under torchrun
        self.dist_backend: str | None = None
        self.train_memory: dict[str, int | None] | None = None
        self.framework_tokens_seen: int | None = None
        self.world_size = 1
        self._handle = None
        self._reset_acc()
        self._t_anchor: float | None = None
        self._t_begin: float | None = None
        self._counters_begin: dict[str, int] | None = None
        self._supervised_known = True
        # per step: garbage-collector time and preemptions of the training thread (host_pauses.py)
        self._pauses = HostPauseMeter()  # its own clock: an injected test clock must not be read by the collector

    # ---- counting ----------------------------------------------------------------------------------
    def _reset_acc(self) -> None:
        self._acc_tokens: Any = 0
        self._acc_supervised: Any = 0
        self._acc_samples: Any = 0
        self._acc_micro = 0
        self._acc_max_len = 0
        self._acc_padded = 0

    def count_batch(self, kwargs: dict[str, Any], args: tuple = ()) -> None:
        """Add one micro-batch (the model call's kwargs / positional args) to the current step."""
        input_ids = kwargs.get("input_ids")
        if input_ids is None and args and torch.is_tensor(args[0]):
            input_ids = args[0]
        embeds = kwargs.get("inputs_embeds")
        shape = list(input_ids.shape) if input_ids is not None else (
            list(embeds.shape[:-1]) if embeds is not None else None)
        if shape is None:
            return
        mask = kwargs.get("attention_mask")
        position_ids = kwargs.get("position_ids")
        blocks = block_mask_segments(mask, to_cpu=False) if torch.is_tensor(mask) and mask.dim() == 4 else None
        padding = None
        if torch.is_tensor(mask) and mask.dim() == 2:
            tokens = mask.sum()
        elif blocks is not None:  # a block-diagonal mask (packed rows): the tokens that attend to themselves
            tokens = blocks[0].sum()
        elif position_ids is None and input_ids is not None and self.pad_token_id is not None:
            tokens = (input_ids != self.pad_token_id).sum()
        elif (mask is None and input_ids is not None and self.pad_token_id is not None
              and torch.is_tensor(position_ids) and position_ids.shape == input_ids.shape):
            # packed rows without a mask: every token but a padding segment's (axolotl pads rows with one)
            padding = padding_segments(input_ids, position_ids, self.pad_token_id)
            tokens = padding.numel() - padding.sum()
        else:
            tokens = shape[0] * shape[-1] if len(shape) > 1 else shape[0]
        shift_labels = kwargs.get("shift_labels")
        labels = kwargs.get("labels")
        if torch.is_tensor(shift_labels):
            supervised = (shift_labels != IGNORE_INDEX).sum()
        elif torch.is_tensor(labels):
            supervised = (labels[..., 1:] != IGNORE_INDEX).sum()
        else:
            supervised = 0
            self._supervised_known = False
        if padding is not None:
            samples = ((position_ids == 0) & ~padding).sum()
        elif torch.is_tensor(position_ids) and position_ids.dim() == 2:
            samples = (position_ids == 0).sum()
        elif blocks is not None:  # packed rows with a block-diagonal mask: one sample per block
            samples = blocks[1].sum()
        else:
            samples = shape[0]
        self._acc_tokens = self._acc_tokens + tokens
        self._acc_supervised = self._acc_supervised + supervised
        self._acc_samples = self._acc_samples + samples
        self._acc_micro += 1
        self._acc_max_len = max(self._acc_max_len, shape[-1])
        self._acc_padded += shape[0] * shape[-1] if len(shape) > 1 else shape[0]
        if self.first_batch_shape is None:
            self.first_batch_shape = shape
        if len(self.first_batches) < FIRST_BATCHES_KEPT:
            record = batch_record(kwargs, args, self.pad_token_id)
            if record is not None:
                self.first_batches.append(record)

    def _read_counts(self) -> tuple[int, int, int]:
        """The step's three counters in one device-to-host transfer (after the step's sync)."""
        values = (self._acc_tokens, self._acc_supervised, self._acc_samples)
        device = next((v.device for v in values if torch.is_tensor(v)), None)
        if device is None:
            return int(values[0]), int(values[1]), int(values[2])
        stacked = torch.stack([torch.as_tensor(v, device=device, dtype=torch.int64).reshape(()) for v in values])
        a, b, c = stacked.tolist()
        return int(a), int(b), int(c)

    def _pre_hook(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        if module.training:
            self.count_batch(kwargs, args)
        return None

    def attach(self, model: torch.nn.Module) -> None:
        """Register the counting hook on ``model`` (done by on_train_begin; public for custom loops)."""
        self.detach()
        self._handle = model.register_forward_pre_hook(self._pre_hook, with_kwargs=True)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    # ---- callback hooks ----------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.pad_token_id is None and processing_class is not None:
            self.pad_token_id = getattr(processing_class, "pad_token_id", None)
        if model is not None:
            self.attach(model)
        sync_cuda()
        self._t_anchor = self._clock()
        self._t_begin = None
        self._pauses.start()

    def on_step_begin(self, args, state, control, **kwargs):
        sync_cuda()
        self._t_begin = self._clock()
        if self._t_anchor is None:
            self._t_anchor = self._t_begin
        self._counters_begin = allocator_counters()

    def on_step_end(self, args, state, control, **kwargs):
        sync_cuda()
        t_end = self._clock()
        wall_end = time.time()
        tokens, supervised, samples = self._read_counts()
        begin = self._t_begin if self._t_begin is not None else t_end
        anchor = self._t_anchor if self._t_anchor is not None else begin
        self.records.append({
            "step": int(getattr(state, "global_step", len(self.records) + 1)),
            "time_s": t_end - anchor, "compute_s": t_end - begin,
            "tokens": tokens, "supervised_tokens": supervised,
            "samples": samples, "micro_batches": self._acc_micro,
            "max_seq_len": self._acc_max_len, "padded_tokens": self._acc_padded,
            "loss": None, "grad_norm": None, "lr": None, "t_end": wall_end,
            **self._allocator_deltas(), **self._pauses.take()})
        self._reset_acc()
        self._t_anchor = t_end
        self._t_begin = None

    def _allocator_deltas(self) -> dict[str, int]:
        """How often this step went to the driver for memory (empty on CPU)."""
        begin, end = self._counters_begin, allocator_counters()
        if begin is None or end is None:
            return {}
        return {k: end[k] - begin[k] for k in end}

    def reanchor(self) -> None:
        """Evaluation / checkpoint saving inside the loop is not training work: restart the clock."""
        sync_cuda()
        self._t_anchor = self._clock()
        self._pauses.take()  # the evaluation's collections are not the next step's

    def on_evaluate(self, args, state, control, **kwargs):
        self.reanchor()

    def on_save(self, args, state, control, **kwargs):
        self.reanchor()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not self.records:
            return
        step = int(getattr(state, "global_step", 0))
        target = next((r for r in reversed(self.records) if r["step"] == step), None)
        if target is None:
            return
        for ours, theirs in (("loss", "loss"), ("grad_norm", "grad_norm"), ("lr", "learning_rate"),
                             ("num_input_tokens_seen", "num_input_tokens_seen")):
            if theirs in logs and logs[theirs] is not None:
                value = logs[theirs]
                target[ours] = float(value) if ours != "num_input_tokens_seen" else int(value)
        # Logging (a loss .item(), console/file writes) is part of training as users run it, so the
        # clock is deliberately *not* restarted here.

    def on_train_end(self, args, state, control, **kwargs):
        # The allocator's peaks of the training phase alone: frameworks evaluate right after training
        # (trl's evaluate(), LLaMA-Factory's do_eval) and that must not count as training memory.
        self.train_memory = torch_memory()
        # From here on the allocator's peaks are the evaluations' (the worker reads them per phase), so a
        # wide evaluation batch can never pass for the training peak or hide inside it.
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()
        self.detach()
        self._pauses.stop()
        seen = getattr(state, "num_input_tokens_seen", None)
        self.framework_tokens_seen = int(seen) if seen else None
        self._combine_ranks()

    def _combine_ranks(self) -> None:
        """Under torchrun, once at train end: per-step counts summed over ranks (tokens/s means all ranks
        together), step times maxed, every rank's allocator peaks gathered."""
        try:
            import torch.distributed as dist  # noqa: PLC0415

            if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
                return
            self.world_size = dist.get_world_size()
            device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else "cpu"
            # compiles: a rank that alone recompiles (its own batch shapes) stalls the step for all of them;
            # left alone where this torch gives no reading (None, host_pauses.py), on every rank alike
            read = all(r.get("compiles") is not None for r in self.records)
            keys = ("tokens", "supervised_tokens", "samples") + (("compiles",) if read else ())
            counts = torch.tensor([[int(r.get(k) or 0) for k in keys] for r in self.records] or [[0] * len(keys)],
                                  dtype=torch.int64, device=device)
            dist.all_reduce(counts)
            for r, row in zip(self.records, counts.tolist()):
                for k, v in zip(keys, row):
                    r[k] = int(v)
            self._all_reduce_step_times(dist, device)
            # Every rank's allocator peaks, gathered here because every framework's ranks pass through
            # on_train_end with the group alive (LLaMA-Factory destroys it before returning to us).
            gathered: list[Any] = [None] * self.world_size
            dist.all_gather_object(gathered, self.train_memory)
            self.train_memory_per_rank = gathered
            self.dist_backend = str(dist.get_backend())  # gloo on CPU, nccl on GPUs
        except Exception:  # noqa: BLE001  (counting must never fail training; rank-local counts remain)
            pass

    def _all_reduce_step_times(self, dist: Any, device: Any) -> None:
        """A step ends when its slowest rank ends (DDP's gradient all-reduce waits for it): each step's
        time_s / compute_s becomes the MAX over ranks, so step time and tokens/s are the slowest rank's."""
        # compile_s: the longest rank's compilation in the step, where this torch reads it
        keys = ("time_s", "compute_s") + (("compile_s",) if all(r.get("compile_s") is not None
                                                                 for r in self.records) else ())
        times = torch.tensor([[float(r.get(k) or 0.0) for k in keys] for r in self.records] or [[0.0] * len(keys)],
                             dtype=torch.float64, device=device)
        dist.all_reduce(times, op=dist.ReduceOp.MAX)
        for r, row in zip(self.records, times.tolist()):
            for k, v in zip(keys, row):
                r[k] = float(v)

    # ---- results -----------------------------------------------------------------------------------
    @property
    def steps(self) -> int:
        return len(self.records)

    def settled(self) -> dict[str, Any]:
        """The warm-up (fixed: ``warmup_steps``) and, with ``settle_factor``, the evidence that step times
        had settled when timing started (see the module docstring)."""
        return settle_evidence(self.records, self.warmup_steps, self.settle_factor)

    @property
    def supervised_known(self) -> bool:
        """Whether every training batch carried labels to count (False: the count is a lower bound, maybe 0)."""
        return self._supervised_known

    def summary(self) -> dict[str, Any]:
        """The ``train`` section of result.json (harness/worker/train_summary.py)."""
        return train_summary(self.records, self.settled(), supervised_known=self._supervised_known,
                             framework_tokens_seen=self.framework_tokens_seen, world_size=self.world_size,
                             first_batch_shape=self.first_batch_shape)
