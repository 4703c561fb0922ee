"""The files of a run directory (``results/SUITE/POINT/FRAMEWORK-VERSION-HASH/rN/``), each named once.

Parent and worker both import these names; nothing else spells them.
"""
from __future__ import annotations

from pathlib import Path

JOB = "job.json"  # the job the worker runs (parent writes, worker reads): harness.records.JobFile
WORKER_RESULT = "worker_result.json"  # the worker's measurements (worker writes, parent reads)
RESULT = "result.json"  # the run's record (parent writes; every reader): harness.records.Result
WORKER_LOG = "worker.log"  # the worker's stdout and stderr
MEMORY_TIMELINE = "memory_timeline.csv.gz"  # the parent's NVML samples over the run, gzipped (a 7B run's CSV is
# ~0.6 MB and compresses ~8x: the committed results travel to the GPU machine with every call)
PROFILE_TRACE = "profile_trace.json.gz"  # profile=time: torch.profiler's Chrome trace (Perfetto, TensorBoard)
MEMORY_SNAPSHOT = "memory_snapshot.pickle"  # profile=memory: the allocator snapshot at the peak (memory_viz)
DATA = "data"  # the prepared train/eval splits the worker reads (removed after the run)
FRAMEWORK_OUTPUT = "framework_output"  # the framework's output_dir: adapters, checkpoints (removed)
BARE_OUTPUT = "bare_output"  # benchmarks/bare_*.py's output_dir (removed)
# What a run leaves that is not a result: recreated from job.json and the data digest (keep_outputs keeps them).
DISPOSABLE = (FRAMEWORK_OUTPUT, DATA, BARE_OUTPUT)


def result_path(run_dir: Path | str) -> Path:
    return Path(run_dir) / RESULT
