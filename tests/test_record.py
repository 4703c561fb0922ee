"""The result record's memory headline covers the training phase, not loading or evaluation."""
from __future__ import annotations

from harness.results.assemble import _nvml_peak_between


class TimelineSampler:
    def __init__(self, rows):
        self.rows = rows

    def timeline(self):
        return self.rows


def test_nvml_peak_is_taken_inside_the_training_window_above_idle():
    nvml = {"available": True, "per_device": [{"nvml_index": 0, "baseline_used_bytes": 100}]}
    rows = [{"t": 1.0, "device": 0, "used_bytes": 900},   # model load, before training
            {"t": 2.0, "device": 0, "used_bytes": 400},
            {"t": 3.0, "device": 0, "used_bytes": 600},   # training peak
            {"t": 5.0, "device": 0, "used_bytes": 5000}]  # evaluation, after training
    assert _nvml_peak_between(TimelineSampler(rows), nvml, 2.0, 4.0) == 500


def test_no_gpu_or_no_window_gives_none():
    assert _nvml_peak_between(TimelineSampler([]), {"available": False}, 1.0, 2.0) is None
    assert _nvml_peak_between(TimelineSampler([]), {"available": True}, None, 2.0) is None


class SummarySampler(TimelineSampler):
    """A parent-side sampler as build_record sees it: a timeline, a summary, energy over a window."""

    def __init__(self, rows, summary):
        super().__init__(rows)
        self._summary = summary

    def summary(self):
        return self._summary

    def energy_between(self, t0, t1):
        return 50.0


def _record(sampler, phases):
    from harness.results.assemble import build_record
    from harness.records import JobFile, WorkerResult

    job = JobFile.from_dict({"framework": {"name": "fake", "version": "0"}, "suite": "s",
                             "train": {"gradient_checkpointing": True}})
    worker = WorkerResult.from_dict({"status": "failed", "reason": "x", "phases": phases, "train": {"tokens": 1000}})
    return build_record(job=job, view={"worker": worker, "wall_time_s": 9.0}, sampler=sampler, run_dir=None,
                        repeat=0, job_hash="j", point_hash="p").to_dict()


def test_energy_method_is_the_samplers_source_and_each_phase_has_its_peak():
    nvml = {"available": True, "energy_source": "counter", "peak_used_bytes": 5000,
            "per_device": [{"nvml_index": 0, "baseline_used_bytes": 100}],
            "host": {"samples": 3, "cpu_count": 2, "cpu_shared": False, "other_busy_cores_mean": 0.0,
                     "other_gpu_processes": [], "other_busy_gpus": []}}
    rows = [{"t": t, "device": 0, "used_bytes": u} for t, u in
            ((1.5, 900), (2.5, 600), (3.5, 5100), (4.5, 300))]
    phases = {"process_start": 1.0, "train_start": 2.0, "train_end": 3.0, "framework_eval_end": 4.0, "eval_end": 5.0}
    record = _record(SummarySampler(rows, nvml), phases)
    assert record["energy"]["method"] == "counter" and record["energy"]["joules_per_1k_tokens"] == 50.0
    assert record["memory"]["nvml_phase_peaks"] == {"load": 800, "train": 500, "framework_eval": 5000, "our_eval": 200}
    assert record["host"]["disclosure"] == {"shared": False, "because": []}


def test_model_build_is_its_own_phase():
    from harness.phases import durations

    d = durations({"process_start": 0.0, "imports_done": 18.0, "model_built": 34.0, "model_loaded": 38.0})
    assert d["imports"] == 18.0 and d["model_build"] == 16.0 and d["model_load"] == 4.0
    old = durations({"process_start": 0.0, "imports_done": 18.0, "model_loaded": 38.0})  # results before the phase
    assert old["model_build"] is None and old["model_load"] == 20.0


def test_data_reached_with_the_model_has_no_time_of_its_own():
    """LLaMA-Factory, ms-swift and axolotl load model and data inside one call (both marked at the Trainer's
    init): their data time is unknown (None, shown '–'), never 0 s that a report would rank first."""
    from harness.phases import durations

    together = durations({"process_start": 0.0, "imports_done": 2.0, "model_loaded": 9.0, "data_ready": 9.0,
                          "train_start": 9.5})
    assert together["data"] is None and together["model_load"] == 7.0 and together["setup"] == 0.5
    apart = durations({"process_start": 0.0, "imports_done": 2.0, "model_loaded": 9.0, "data_ready": 9.25})
    assert apart["data"] == 0.25


def test_the_trainer_init_marks_model_and_data_together_unless_an_adapter_marked_them():
    import harness.phases as phases
    from harness.worker.live_objects import LiveObjects

    saved = dict(phases._marks)
    try:
        phases._marks.clear()
        LiveObjects().on_init_end(None, None, None)
        assert phases._marks["model_loaded"] == phases._marks["data_ready"]
        phases._marks.clear()
        phases.mark("model_loaded", 1.0)
        LiveObjects().on_init_end(None, None, None)
        assert phases._marks["model_loaded"] == 1.0 and phases._marks["data_ready"] > 1.0
    finally:
        phases._marks.clear()
        phases._marks.update(saved)
