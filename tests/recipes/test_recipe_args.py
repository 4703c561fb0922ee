"""The recipes' native arguments (pure functions of the job, any machine): the identical recipe is byte for byte
what it was before recipes existed (golden file, hashes included), and each framework's recommended recipe
changes exactly the arguments docs/recipes.md part 2 names, nothing of the task."""
from __future__ import annotations

import copy
import json

import pytest

from harness.config.job import identical_twin, job_hash, point_hash
from harness.frameworks import recipes
from harness.frameworks.axolotl.config import PLUGIN as AXOLOTL_PLUGIN
from tests.recipes.golden import FRAMEWORKS, GOLDEN, JOBS, hashes, job_for, native

GOLDEN_DATA = json.loads(GOLDEN.read_text())


def _diff(before: dict, after: dict, prefix: str = "") -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key, "<absent>"), after.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(_diff(a, b, f"{prefix}{key}."))
        elif a != b:
            out[f"{prefix}{key}"] = (a, b)
    return out


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("name", list(JOBS))
@pytest.mark.parametrize("spelled_out", [False, True])
def test_identical_native_args_and_hashes_unchanged(framework, name, spelled_out):
    extra = {"recipe": "identical"} if spelled_out else {}
    job = job_for(name, framework, **extra)
    golden = GOLDEN_DATA[f"{framework}/{name}"]
    assert native(framework, job) == golden["native_args"]
    assert hashes(job) == {"job_hash": golden["job_hash"], "point_hash": golden["point_hash"]}
    # an identical job.json carries no trace of recipes
    assert sorted(job) == golden["job_keys"] and "recipe" not in job
    assert not {"recommended", "always_on"} & set(job["framework"])
    assert recipes.feature_plan(job) == [] and recipes.adapter_flags(job) == {}


# What docs/recipes.md part 2 puts in each recommended recipe, as native-argument changes from the identical
# recipe (section.key: (identical, recommended)); QLoRA adds what the table's "QLoRA adds" column says.
EXPECTED = {
    "trl": {"sft_config.max_length": (1024, None), "sft_config.optim": ("adamw_torch", "adamw_torch_fused"),
            "sft_config.pad_to_multiple_of": (8, None), "sft_config.padding_free": (False, True),
            "sft_config.use_liger_kernel": (False, True)},
    "unsloth": {"get_peft_model.use_gradient_checkpointing": (True, "unsloth"),
                "sft_config.gradient_checkpointing": (True, "<absent>"),
                "sft_config.gradient_checkpointing_kwargs": ({"use_reentrant": False}, "<absent>"),
                "sft_config.optim": ("adamw_torch", "adamw_torch_fused"), "sft_config.padding_free": (False, True)},
    "llamafactory": {"enable_liger_kernel": (False, True), "flash_attn": ("sdpa", "auto"), "neat_packing": (False, True),
                     "optim": ("adamw_torch", "adamw_torch_fused"), "packing": (False, True),
                     "use_reentrant_gc": (False, True)},
    "swift": {"optim": ("adamw_torch", "adamw_torch_fused"), "use_liger_kernel": (False, True)},
    "axolotl": {"sample_packing": (False, True), "pad_to_sequence_len": ("<absent>", True),
                "sdpa_varlen": ("<absent>", True), "lora_mlp_kernel": (False, True), "lora_qkv_kernel": (False, True),
                "lora_o_kernel": (False, True), "lora_embedding_kernel": (False, True),
                "liger_rope": ("<absent>", True), "liger_rms_norm": ("<absent>", True),
                "liger_glu_activation": ("<absent>", False), "liger_fused_linear_cross_entropy": ("<absent>", True),
                "plugins": ([AXOLOTL_PLUGIN], [AXOLOTL_PLUGIN, "axolotl.integrations.liger.LigerPlugin"]),
                "optimizer": ("adamw_torch", "adamw_torch_fused"), "tf32": (False, True),
                "dataloader_num_workers": (0, "<absent>")},
}
QLORA_ADDS = {"llamafactory": {"upcast_layernorm": (False, True)}}
FLAGS = {("axolotl", "throughput_7b"): {"plugins": ["axolotl.integrations.liger.LigerPlugin"]},
         ("axolotl", "qlora_7b"): {"plugins": ["axolotl.integrations.liger.LigerPlugin"]},
         ("trl", "throughput_7b"): {"pretruncate": True}, ("trl", "qlora_7b"): {"pretruncate": True, "keep_bf16_adapters": True},
         ("unsloth", "throughput_7b"): {"auto_padding_free": True}, ("unsloth", "qlora_7b"): {"auto_padding_free": True}}


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("name", ["throughput_7b", "qlora_7b"])
def test_recommended_native_args(framework, name):
    job = job_for(name, framework, recipe="recommended")
    identical = GOLDEN_DATA[f"{framework}/{name}"]["native_args"]
    expected = {**EXPECTED[framework], **(QLORA_ADDS.get(framework, {}) if name == "qlora_7b" else {})}
    assert _diff(identical, native(framework, job)) == expected
    assert recipes.adapter_flags(job) == FLAGS.get((framework, name), {})
    # the task is the identical job's: only the recipe and the framework's feature block were added
    twin = identical_twin(job)
    assert {k: v for k, v in job.items() if k != "recipe"} | {"framework": twin["framework"]} == twin


def test_trl_padding_free_takes_pretruncated_tokens_not_conversations():
    jobs = {}
    for recipe in ("identical", "recommended"):
        jobs[recipe] = job_for("tiny", "trl", recipe=recipe, dataset="tiny_sharegpt")
        jobs[recipe]["dataset"]["format"] = "sharegpt"  # as data preparation records it
    identical, recommended = (native("trl", jobs[r])["sft_config"] for r in ("identical", "recommended"))
    assert identical["assistant_only_loss"] is True and "chat_template_path" in identical
    # tokens and labels from harness.data.tokenize (the same supervision), which trl refuses as conversational
    assert recommended["assistant_only_loss"] is False and "chat_template_path" not in recommended


def test_recommended_hashes_and_twin():
    identical, recommended = job_for("tiny", "trl"), job_for("tiny", "trl", recipe="recommended")
    spec = {k: v for k, v in recommended.items() if k != "runtime"}
    base = {k: v for k, v in identical.items() if k != "runtime"}
    assert job_hash(spec) != job_hash(base) and point_hash(spec) != point_hash(base)
    assert job_hash(identical_twin(spec)) == job_hash(base) and point_hash(identical_twin(spec)) == point_hash(base)
    # the three frameworks' recommended runs form one sweep point of their own
    assert point_hash(spec) == point_hash({k: v for k, v in job_for("tiny", "llamafactory", recipe="recommended").items()
                                           if k != "runtime"})
    # editing a feature in the yaml makes another job (resume never mixes two recipes); the point stays
    edited = copy.deepcopy(spec)
    edited["framework"]["recommended"][0]["args"]["sft_config"]["padding_free"] = False
    assert job_hash(edited) != job_hash(spec) and point_hash(edited) == point_hash(spec)


def test_recipe_packing_switches_packing_features():
    on = job_for("tiny", "trl", recipe="recommended", **{"recipe.packing": "on"})
    status = {f["id"]: f["status"] for f in recipes.feature_plan(on)}
    assert status["packing"] == "applied" and recipes.packs(on)
    args = native("trl", on)["sft_config"]
    assert (args["packing"], args["packing_strategy"], args["padding_free"], args["max_length"]) == (True, "bfd", True, 1024)
    assert recipes.adapter_flags(on)["pretruncate"] is False  # packing truncates itself
    off = job_for("tiny", "llamafactory", recipe="recommended", **{"recipe.packing": "off"})
    assert {f["id"]: f["status"] for f in recipes.feature_plan(off)}["neat_packing"] == "off"
    assert native("llamafactory", off)["neat_packing"] is False and not recipes.packs(off)


def test_token_budget_sets_rows_and_steps_of_a_packing_recipe():
    job = job_for("tiny", "llamafactory", recipe="recommended")
    job["runtime"]["recipe_budget"] = {"rows_per_step": 3, "steps": 47}
    args = native("llamafactory", job)
    assert (args["per_device_train_batch_size"], args["max_steps"]) == (3, 47)
    trl = job_for("tiny", "trl", recipe="recommended", **{"recipe.packing": "on"})
    trl["runtime"]["recipe_budget"] = {"rows_per_step": 2, "steps": 40}
    sft = native("trl", trl)["sft_config"]
    assert (sft["per_device_train_batch_size"], sft["max_steps"]) == (2, 40)
    # a recipe that does not pack keeps the task's batch and steps whatever the runtime says
    plain = job_for("tiny", "trl", recipe="recommended")
    plain["runtime"]["recipe_budget"] = {"rows_per_step": 2, "steps": 40}
    assert native("trl", plain)["sft_config"]["max_steps"] == plain["train"]["max_steps"]


def test_axolotl_multipack_takes_the_budget_in_micro_batch_size_and_cpu_keeps_what_runs_there():
    job = job_for("tiny", "axolotl", recipe="recommended")
    job["runtime"]["recipe_budget"] = {"rows_per_step": 3, "steps": 47}
    job["runtime"]["recipe_unavailable"] = recipes.missing_requirements(job, "cpu", lambda name: object())
    assert set(job["runtime"]["recipe_unavailable"]) == {"sdpa_varlen", "lora_kernels", "liger", "tf32"}
    args = native("axolotl", job)
    # the rows per step are axolotl's micro_batch_size (per_device_train_batch_size would be an unknown key)
    assert (args["micro_batch_size"], args["max_steps"]) == (3, 47) and "per_device_train_batch_size" not in args
    assert (args["sample_packing"], args["pad_to_sequence_len"], args["optimizer"]) == (True, True, "adamw_torch_fused")
    # what needs CUDA stays as the identical recipe pins it, and no Liger plugin is named; the workers are axolotl's
    assert (args["lora_mlp_kernel"], args["tf32"]) == (False, False) and "dataloader_num_workers" not in args
    assert "sdpa_varlen" not in args and args["plugins"] == [AXOLOTL_PLUGIN]
    off = job_for("tiny", "axolotl", recipe="recommended", **{"recipe.packing": "off"})
    status = {f["id"]: f["status"] for f in recipes.feature_plan(off)}
    assert status["multipack"] == status["sdpa_varlen"] == "off" and not recipes.packs(off)
    assert native("axolotl", off)["sample_packing"] is False and "sdpa_varlen" not in native("axolotl", off)


def test_a_feature_that_cannot_run_here_is_dropped_with_its_reason():
    job = job_for("tiny", "trl", recipe="recommended")
    missing = recipes.missing_requirements(job, "cpu", lambda name: None)
    assert missing["liger"] == "needs cuda, this run is on cpu"
    gpu = recipes.missing_requirements(job, "cuda", lambda name: None if name == "liger_kernel" else object())
    assert gpu == {"liger": "liger_kernel is not importable in this environment"}
    job["runtime"]["recipe_unavailable"] = missing
    plan = {f["id"]: (f["status"], f["reason"]) for f in recipes.feature_plan(job)}
    assert plan["liger"] == ("unavailable", "needs cuda, this run is on cpu")
    args = native("trl", job)["sft_config"]
    assert args["use_liger_kernel"] is False and args["padding_free"] is True  # the rest of the recipe runs


def test_features_that_assume_a_task_setting_step_aside():
    job = job_for("tiny", "llamafactory", recipe="recommended", **{"train.optimizer": "sgd",
                                                                    "train.gradient_checkpointing": False})
    plan = {f["id"]: f["status"] for f in recipes.feature_plan(job)}
    assert plan["fused_adamw"] == plan["reentrant_gc"] == "not for this job"
    args = native("llamafactory", job)
    assert args["optim"] == "sgd" and args["use_reentrant_gc"] is False
