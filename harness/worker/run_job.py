"""One run, in a fresh process under the framework's interpreter (``python -m harness.worker RUN_DIR``).

Reads ``RUN_DIR/job.json``, imports the framework (unsloth first, before anything imports
transformers), trains through the adapter with our callbacks, evaluates with our own evaluator and
writes ``RUN_DIR/worker_result.json`` atomically. A fault is written as a status, never lost:
the parent adds what only it can see (NVML, wall time, signals, timeouts).

Under torchrun (``launcher=torchrun``) every rank runs this module and trains; per-step counts are
summed, step times maxed and each rank's torch allocator peaks gathered over ranks at train end
(StepMeter; ``memory.per_rank``, the headline is the max), and only rank 0 evaluates and writes the
result; the other ranks exit 0 without writing. A rank whose run failed exits 1 (rank 0 after writing
its result) so that torchrun stops the peers instead of leaving them waiting in a collective.
"""
from __future__ import annotations

from harness import phases

phases.mark("process_start")

import contextlib  # noqa: E402
import importlib.metadata  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from harness.records import run_files  # noqa: E402
from harness.atomic import atomic_write_json, read_json  # noqa: E402
from harness.frameworks import Adapter, load_adapter  # noqa: E402
from harness.frameworks.base import (FRAMEWORK_EVAL_BATCH, PAD_TO_MULTIPLE_OF,  # noqa: E402
                                     FrameworkUnavailable)
from harness.records import JobFile, Runtime, WorkerResult  # noqa: E402
from harness.records.audit import Audit  # noqa: E402
from harness.records.memory import Memory  # noqa: E402
from harness.records.training import Eval, Train  # noqa: E402
from harness.worker import recipe_run, sdpa  # noqa: E402


def package_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _dist_ready() -> bool:
    try:
        import torch.distributed as dist

        return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    except Exception:  # noqa: BLE001
        return False


def _memory_headline(per_rank: list[dict[str, Any]] | None, local: dict[str, Any]) -> dict[str, Any]:
    """The busiest rank's peaks as the headline (what one GPU must hold), each rank's under per_rank."""
    if not per_rank:
        return local
    out: dict[str, Any] = {}
    for key in local:
        vals = [m.get(key) for m in per_rank if isinstance(m.get(key), (int, float))]
        out[key] = max(vals) if vals else None
    out["per_rank"] = per_rank
    return out


def _is_oom(err: BaseException) -> bool:
    name = type(err).__name__
    return name == "OutOfMemoryError" or "out of memory" in str(err).lower()


def _runtime(job: dict[str, Any]) -> None:
    """Facts of this process the adapters need: device, precision support (the worker's part of the
    runtime; the parent's came in job.json). The adapters read the job as a mapping."""
    import torch

    runtime = Runtime.from_dict(job["runtime"], "job.runtime")
    cuda = torch.cuda.is_available()
    if "WORLD_SIZE" in os.environ:  # started by torchrun: what it actually launched
        runtime.world_size = int(os.environ["WORLD_SIZE"])
        runtime.rank = rank()
    runtime.device = "cuda" if cuda else "cpu"
    runtime.bf16_supported = bool(cuda and torch.cuda.is_bf16_supported())
    runtime.gpu_name = torch.cuda.get_device_name(0) if cuda else None
    runtime.torch_cuda = torch.version.cuda  # the CUDA torch was built for (None: a CPU build)
    job["runtime"] = runtime.to_dict()


def _build_model(job: dict[str, Any]) -> None:
    """``model.weights=random``: the seeded model's folder, built on first use (its own phase,
    ``model_build``: a 7B build takes longer than the imports it used to be counted in)."""
    if job["model"]["weights"] == "random":
        from harness.worker.model_cache import random_weights_model

        job["model"]["path"] = str(random_weights_model(Path(job["model"]["path"]), job["model"]["init_seed"]))
    phases.mark("model_built")


def _train_and_measure(job: dict[str, Any], adapter: Adapter, result: WorkerResult) -> None:
    from harness.worker.live_fields.read import read_live_fields
    from harness.data.dataset import read_split
    from harness.worker.live_objects import LiveObjects
    from harness.worker.evaluator import evaluate_loss
    from harness.worker.periodic_eval import PeriodicEval
    from harness.worker.step_meter import StepMeter, torch_memory

    t = job["train"]
    from harness.worker.loss_probe import LOSS_PROBE_STEPS

    # The loss probe's hooks stay inside the untimed warm-up steps (at least the first step is watched).
    live = LiveObjects(loss_probe_steps=max(1, min(LOSS_PROBE_STEPS, t["measure_warmup_steps"])))
    meter = StepMeter(warmup_steps=t["measure_warmup_steps"], settle_factor=t.get("settle_factor"))
    eval_records = read_split(job["runtime"]["data_dir"], "eval")
    from harness.worker.progress import ProgressPrinter

    steps = (job["runtime"].get("recipe_budget") or {}).get("steps") or t["max_steps"]  # a packed run's own
    callbacks: list[Any] = [live, meter, ProgressPrinter(meter, steps, job["runtime"].get("world_size", 1))]
    if t["eval_steps"]:
        callbacks.append(PeriodicEval(job, eval_records, meter, adapter.evaluation_env))
    from harness.worker import profiling

    profiler = profiling.profiler_for(job)  # None unless profile=memory|time: right after the StepMeter
    if profiler is not None:
        callbacks.insert(callbacks.index(meter) + 1, profiler)
    # profiled runs: which loss path ran, read back; profile.loss=transformers puts the common loss in place.
    # Last: its hook that takes the labels out of the forward must run after the StepMeter's, which counts them.
    loss_probe = profiling.loss_probe_for(job, adapter.native_loss)
    # profiled runs: peft's LoRA input casts counted; profile.lora_input_cast=off switches them off for training.
    lora_cast = profiling.lora_cast_probe_for(job, adapter.lora_input_cast)
    if lora_cast is not None:
        callbacks.append(lora_cast)
    if loss_probe is not None:
        callbacks.append(loss_probe)
    try:
        with loss_probe.watching() if loss_probe is not None else contextlib.nullcontext():
            trained = adapter.train(job, callbacks)
    finally:
        if lora_cast is not None:
            lora_cast.stop()  # a run that failed mid-step never reached train end: put peft's cast back
        # Whatever happened, keep what was measured so far (an OOM keeps its peak and its steps).
        result.train = Train.from_dict(meter.summary(), "train")
        result.memory = Memory.from_dict(meter.train_memory or torch_memory(), "memory")
        if profiler is not None:
            result.profile = profiling.finish(profiler, step_log=meter.records, memory=result.memory.to_dict(),
                                              loss_probe=loss_probe, lora_cast=lora_cast)
    _refuse_an_unsupervised_run(result.train, t["max_length"], meter.supervised_known)
    if meter.dist_backend:
        job["runtime"]["dist_backend"] = meter.dist_backend
    headline = _memory_headline(meter.train_memory_per_rank, result.memory.to_dict())
    result.memory = Memory.from_dict(headline, "memory")
    if rank() != 0:
        return  # rank 0 evaluates and writes the result
    phases.mark("framework_eval_end")
    # The StepMeter reset the allocator's peaks at train end: this is the framework's own evaluation's.
    phase_peaks = {"train": headline, "framework_eval": torch_memory()}
    result.train.train_call_s = trained.train_call_s
    result.audit = Audit.from_dict(read_live_fields(live, meter, job, adapter), "audit")
    recipe_run.read_back(job, result, live)
    _release_cached_memory()
    # A framework whose entry point returns nothing (Trained's fields None): what its Trainer gave our callbacks.
    model = trained.model if trained.model is not None else live.model
    tokenizer = trained.tokenizer if trained.tokenizer is not None else live.tokenizer
    framework_loss = trained.framework_eval_loss
    if framework_loss is None:
        framework_loss = live.eval_metrics.get("eval_loss")
    # At the framework's eval shapes (batch 1, padded like its collator): the same tensors for the
    # cross-check, and a memory footprint inside the training peak.
    eval_result = evaluate_loss(model, tokenizer, eval_records, max_length=t["max_length"],
                                batch_size=FRAMEWORK_EVAL_BATCH, pad_to_multiple_of=PAD_TO_MULTIPLE_OF,
                                env=adapter.evaluation_env)
    phase_peaks["our_eval"] = torch_memory()
    eval_result["framework_loss"] = framework_loss
    for cb in callbacks:
        if isinstance(cb, PeriodicEval):
            eval_result.update(cb.summary())
    result.eval = Eval.from_dict(eval_result, "eval")
    phases.mark("eval_end")
    # The headline stays the training phase's; each phase's peaks and the whole run's beside it.
    result.memory.phase_peaks = {name: {k: v for k, v in peaks.items() if k != "per_rank"}
                                 for name, peaks in phase_peaks.items()}
    result.memory.run_peaks = {key: max((p[key] for p in phase_peaks.values() if p.get(key) is not None),
                                              default=None) for key in ("torch_max_allocated_bytes",
                                                                        "torch_max_reserved_bytes")}


class NothingSupervised(RuntimeError):
    """Training steps ran and none held a token the loss counts: the run measured nothing worth a figure."""


def _refuse_an_unsupervised_run(train: Train, max_length: int, counted: bool) -> None:
    """A run whose steps saw no supervised token fails, naming the likely cause, instead of reporting "ok" with
    a zero loss (a new user's ``train.max_length=1``: LLaMA-Factory, ms-swift and axolotl trained 6 steps on
    masked tokens alone, and the sweep, the audit and a baseline accepted them). Only where every batch carried
    labels to count: a framework that takes them out before the forward leaves the count unknown, not zero."""
    if counted and train.steps and train.supervised_tokens == 0:  # counted: every batch carried its labels
        raise NothingSupervised(
            f"no supervised token in any of the {train.steps} training steps: every response was masked or cut away "
            f"(train.max_length={max_length} may be shorter than the prompts; dataset.loss_on picks what is supervised)")


def _release_cached_memory() -> None:
    """Before our evaluation: hand the allocator's cached blocks back and restart its peak counters.
    Without it, eval-sized tensors that fit none of training's cached blocks reserve new segments on top:
    trl's 7B QLoRA run reached 16.2 GiB (NVML) in our evaluation against 11.4 GiB in training (session 3)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def run(run_dir: Path) -> WorkerResult:
    job = JobFile.from_dict(read_json(run_dir / run_files.JOB), run_files.JOB).to_dict()  # the adapters' view
    adapter = load_adapter(job["framework"]["name"])
    result = WorkerResult(status="failed", reason="", framework_packages=package_versions(adapter.packages))
    from harness.worker.profiling import apply_alloc_conf

    apply_alloc_conf(job)  # profile.alloc_conf, before anything touches CUDA
    try:
        try:
            if job["runtime"].get("world_size", 1) > 1 and adapter.multi_gpu_unsupported:
                raise FrameworkUnavailable(adapter.multi_gpu_unsupported)  # the parent refuses it too
            adapter.import_framework(job)
            _runtime(job)
        except ImportError as err:
            raise FrameworkUnavailable(f"{err}; install with: {adapter.install_hint}") from err
        # train.sdpa_backend, on every rank: after the framework's import (which may set the flags itself),
        # before it builds the model, the Trainer or any compiled graph (harness/worker/sdpa.py)
        sdpa.apply(job)
        phases.mark("imports_done")
        _build_model(job)
        recipe_run.prepare(job, result)
        _train_and_measure(job, adapter, result)
        result.status, result.reason = "ok", ""
    except FrameworkUnavailable as err:
        result.status, result.reason = "unavailable", str(err)
    except BaseException as err:  # noqa: BLE001  every fault becomes a result
        if isinstance(err, KeyboardInterrupt):
            result.status, result.reason = "interrupted", "interrupted (SIGINT)"
        elif _is_oom(err):
            result.status, result.reason = "oom", f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
        else:
            result.status, result.reason = "failed", f"{type(err).__name__}: {str(err)[:300]}"
        result.traceback = traceback.format_exc()[-4000:]
        traceback.print_exc()
    result.runtime = Runtime.from_dict(job["runtime"]).plain()
    result.model_path = job["model"]["path"]
    if rank() != 0:
        return result  # only rank 0 writes worker_result.json
    phases.mark("result_written")
    result.phases = phases.marks()
    atomic_write_json(run_dir / run_files.WORKER_RESULT, result.to_dict())
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m harness.worker RUN_DIR", file=sys.stderr)
        return 2
    from harness.parent_watch import watch_parent  # noqa: PLC0415

    watch_parent()  # a parent killed with SIGKILL cannot end this group itself
    result = run(Path(argv[0]))
    if rank() == 0:
        print(f"worker: {result.status} {result.reason}".rstrip(), flush=True)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and result.status == "ok":
        _leave_process_group()
    # Under torchrun a failed rank must exit non-zero, or its peers wait in a collective until timeout.
    return 1 if distributed and result.status not in ("ok", "unavailable") else 0


def _leave_process_group() -> None:
    """Wait for rank 0 to finish evaluating and writing, then tear the group down on every rank.

    A rank that exits while its peers still hold the process group can abort in the backend's threads
    ("terminate called without an active exception", seen with gloo), and torchrun then kills rank 0
    mid-evaluation. Only ranks that succeeded come here: a failed rank exits 1 and torchrun stops the rest.
    """
    if not _dist_ready():
        return
    import torch.distributed as dist

    dist.barrier()
    dist.destroy_process_group()

