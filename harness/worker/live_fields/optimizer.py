"""The optimizer (unwrapped from accelerate's wrappers, its param_groups) and the learning-rate schedule
(the scheduler's lr_lambdas, warm-up and total steps)."""
from __future__ import annotations

import functools
from typing import Any

from harness.worker.live_fields.values import attr_path, jsonable
from harness.worker.live_fields.model import approx_numel


_OPTIMIZER_WRAPPERS = ("AcceleratedOptimizer", "LayerWiseDummyOptimizer", "DeepSpeedOptimizerWrapper")
_SCHEDULER_WRAPPERS = ("AcceleratedScheduler", "DeepSpeedSchedulerWrapper")


def unwrap(obj: Any, wrappers: tuple[str, ...], attr: str) -> Any:
    for _ in range(4):
        if obj is not None and type(obj).__name__ in wrappers and getattr(obj, attr, None) is not None:
            obj = getattr(obj, attr)
        else:
            break
    return obj


def read_optimizer(optimizer: Any, out: dict[str, Any], notes: list[str]) -> None:
    opt = unwrap(optimizer, _OPTIMIZER_WRAPPERS, "optimizer")
    if opt is None:
        notes.append("no optimizer on the live objects")
        for k in ("optimizer", "optimizer_module", "lr", "betas", "eps", "weight_decay"):
            out[k] = None
        return
    out["optimizer"] = type(opt).__name__
    out["optimizer_module"] = type(opt).__module__
    groups = list(getattr(opt, "param_groups", None) or [])
    defaults = getattr(opt, "defaults", None) or {}
    g0 = groups[0] if groups else {}

    def pick(key: str) -> Any:
        if key in g0:
            return g0[key]
        return defaults.get(key)

    lr = g0.get("initial_lr", defaults.get("lr"))  # LambdaLR writes initial_lr; group "lr" has decayed
    out["lr"] = jsonable(lr)
    out["lr_final"] = jsonable(g0.get("lr"))
    out["betas"] = jsonable(pick("betas"))
    out["eps"] = jsonable(pick("eps"))
    out["weight_decay"] = jsonable(pick("weight_decay"))
    out["optimizer_groups"] = [{"params": sum(approx_numel(p) for p in g.get("params", [])),
                                "weight_decay": jsonable(g.get("weight_decay")),
                                "lr": jsonable(g.get("initial_lr", g.get("lr")))} for g in groups]
    out["optimizer_params"] = sum(grp["params"] for grp in out["optimizer_groups"])
    out["optimizer_options"] = {k: jsonable(pick(k)) for k in ("amsgrad", "foreach", "fused", "maximize",
                                                                 "capturable", "differentiable")
                                if pick(k) is not None}


_SCHEDULER_LAMBDAS = {
    "_get_linear_schedule_with_warmup_lr_lambda": "linear",
    "_get_cosine_schedule_with_warmup_lr_lambda": "cosine",
    "_get_cosine_with_hard_restarts_schedule_with_warmup_lr_lambda": "cosine_with_restarts",
    "_get_polynomial_decay_schedule_with_warmup_lr_lambda": "polynomial",
    "_get_constant_lambda": "constant",
    "_get_constant_schedule_with_warmup_lr_lambda": "constant_with_warmup",
    "_get_inverse_sqrt_schedule_lr_lambda": "inverse_sqrt",
    "_get_wsd_scheduler_lambda": "warmup_stable_decay",
    "_get_cosine_with_min_lr_schedule_with_warmup_lr_lambda": "cosine_with_min_lr",
}


def read_scheduler(scheduler: Any, args: Any, state: Any, out: dict[str, Any], notes: list[str]) -> None:
    sched = unwrap(scheduler, _SCHEDULER_WRAPPERS, "scheduler")
    out["lr_scheduler_class"] = type(sched).__name__ if sched is not None else None
    lam = None
    lambdas = getattr(sched, "lr_lambdas", None)
    if lambdas:
        lam = lambdas[0]
    keywords = dict(lam.keywords) if isinstance(lam, functools.partial) else {}
    lam_name = getattr(lam.func if isinstance(lam, functools.partial) else lam, "__name__", None)
    out["lr_lambda"] = lam_name
    out["lr_lambda_kwargs"] = jsonable(keywords)
    args_type = jsonable(attr_path(args, "lr_scheduler_type"))
    out["lr_scheduler_type_args"] = args_type
    if lam_name in _SCHEDULER_LAMBDAS:
        out["lr_scheduler"] = _SCHEDULER_LAMBDAS[lam_name]
    elif sched is not None and lam_name is None:
        out["lr_scheduler"] = type(sched).__name__
    else:
        out["lr_scheduler"] = args_type
        if sched is None:
            notes.append("no lr_scheduler on the live objects: lr_scheduler read from args.lr_scheduler_type")
    max_steps = attr_path(state, "max_steps")
    out["total_steps"] = int(max_steps) if isinstance(max_steps, int) and max_steps > 0 else None
    out["global_step"] = attr_path(state, "global_step")
    out["scheduler_training_steps"] = keywords.get("num_training_steps")
    warmup = keywords.get("num_warmup_steps")
    if warmup is None and args is not None:
        try:
            warmup = args.get_warmup_steps(out["total_steps"] or attr_path(args, "max_steps"))
        except Exception:  # noqa: BLE001
            warmup = attr_path(args, "warmup_steps")
        if warmup is not None and lam_name not in ("_get_constant_lambda",):
            notes.append("warmup_steps read from args (not found on the scheduler's lr_lambda)")
    out["warmup_steps"] = jsonable(warmup)
    if args_type is not None and out["lr_scheduler"] not in (None, args_type) and lam_name in _SCHEDULER_LAMBDAS:
        notes.append(f"scheduler built ({out['lr_scheduler']}) differs from args.lr_scheduler_type ({args_type})")
