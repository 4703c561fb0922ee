"""The worker's part of a recommended recipe (issue 17): before training, what cannot run here and the token
budget of a packing feature, into ``job["runtime"]`` (harness/frameworks/recipes.py reads them there, so the
adapters' ``native_args`` stay functions of the job); after training, each applied feature read back from the
live objects (harness/worker/live_fields/recipe_probes.py). Identical jobs pass through untouched."""
from __future__ import annotations

from typing import Any

from harness.records import WorkerResult
from harness.records.recipe import RecipeResult


def prepare(job: dict[str, Any], result: WorkerResult) -> None:
    """recipe=recommended: which features cannot run here (a module that is not importable, a device they do
    not run on) and, when a feature packs, the supervised-token budget (harness/data/budget.py), both into
    ``job["runtime"]`` before the adapter builds its arguments; the plan goes into the result at once, so a
    run that fails still says what it tried."""
    import importlib.util

    from harness.frameworks import recipes

    if not recipes.is_recommended(job):
        return
    runtime = job["runtime"]
    runtime["recipe_unavailable"] = recipes.missing_requirements(job, runtime["device"], importlib.util.find_spec)
    if recipes.packs(job):
        from transformers import AutoTokenizer

        from harness.data.budget import token_budget
        from harness.data.dataset import read_split

        tokenizer = AutoTokenizer.from_pretrained(job["model"]["path"], trust_remote_code=job["model"]["trust_remote_code"])
        runtime["recipe_budget"] = token_budget(read_split(runtime["data_dir"], "train"), tokenizer, job["train"],
                                                world_size=runtime.get("world_size", 1))
    recipe = recipes.recipe_of(job)
    result.recipe = RecipeResult.from_dict({
        "name": recipe["name"], "packing": recipe["packing"], "features": recipes.feature_plan(job),
        "always_on": list(job["framework"].get("always_on") or []), "budget": runtime.get("recipe_budget")},
        "recipe")


def read_back(job: dict[str, Any], result: WorkerResult, live: Any) -> None:
    """After training: every applied feature active or not seen on the live objects; the budget checked."""
    if result.recipe is None:
        return
    from harness.worker.live_fields.recipe_probes import probe_features

    audit = result.audit.fields() if result.audit is not None else {}
    result.recipe.features = probe_features(result.recipe.features, live, audit)
    if result.recipe.budget is not None:
        from harness.data.budget import budget_check

        consumed = result.train.supervised_tokens if result.train is not None else None
        result.recipe.budget = budget_check(result.recipe.budget, consumed)
