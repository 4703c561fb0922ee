"""Typed records of what a run reads and writes: the job (``job.json``), the worker's result
(``worker_result.json``) and the result (``result.json``). Every reader and writer goes through these.

- ``base``: the dataclass <-> JSON object round trip (unknown keys kept, absent stays absent);
- ``schema``: the schema version and the migrations of older results;
- ``job``, ``result``: the records; ``training``, ``memory``, ``machine``, ``audit``, ``checks``: their sections.
"""
from harness.records.base import Record, RecordError
from harness.records.checks import Check
from harness.records.job import JobFile, JobSpec, Runtime
from harness.records.result import Result, WorkerResult, runtime_of
from harness.records.schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "Check", "JobFile", "JobSpec", "Record", "RecordError", "Result", "Runtime",
           "WorkerResult", "runtime_of"]
