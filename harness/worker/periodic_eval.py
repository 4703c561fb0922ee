"""Our evaluator every ``train.eval_steps`` during training: the eval-loss curve against tokens, and
MLPerf's metric, the training time and tokens needed to reach ``train.target_eval_loss``.

The time to target counts training step time only (the meter's clock is restarted after each
evaluation), so evaluation cost does not favour a framework that evaluates more slowly.
"""
from __future__ import annotations

from typing import Any, Mapping

from transformers import TrainerCallback

from harness.worker.evaluator import evaluate_loss


class PeriodicEval(TrainerCallback):
    def __init__(self, job: dict[str, Any], records: list[dict[str, Any]], meter: Any,
                 evaluation_env: Mapping[str, str] | None = None) -> None:
        t = job["train"]
        self.evaluation_env = dict(evaluation_env or {})  # the adapter's (harness/frameworks/adapter.py)
        self.every, self.target = t["eval_steps"], t.get("target_eval_loss")
        self.max_length, self.batch_size = t["max_length"], t["eval_batch_size"]
        self.records, self.meter = records, meter
        self.model_path = job["model"]["path"]
        self._tokenizer = None
        self.curve: list[dict[str, Any]] = []
        self.reached: dict[str, Any] | None = None

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        step = state.global_step
        if model is None or step % self.every or step == state.max_steps:
            return  # the final evaluation is the worker's own, after training
        tokenizer = getattr(processing_class, "tokenizer", processing_class) or self._own_tokenizer()
        result = evaluate_loss(model, tokenizer, self.records, max_length=self.max_length, batch_size=self.batch_size,
                               env=self.evaluation_env)
        done = self.meter.records
        point = {"step": step, "tokens": sum(r["tokens"] for r in done),
                 "train_time_s": sum(r["time_s"] for r in done), "loss": result["loss"]}
        self.curve.append(point)
        if self.target is not None and self.reached is None and result["loss"] <= self.target:
            self.reached = point
        self.meter.reanchor()

    def _own_tokenizer(self):
        """The tokenizer files every framework loaded, for a Trainer that was given none."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        return self._tokenizer

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"curve": self.curve}
        if self.target is not None:
            out["target"] = {"loss": self.target, "reached": self.reached is not None,
                             "step": (self.reached or {}).get("step"),
                             "tokens_to_target": (self.reached or {}).get("tokens"),
                             "time_to_target_s": (self.reached or {}).get("train_time_s")}
        return out
