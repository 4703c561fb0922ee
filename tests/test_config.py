"""Every config option composes, every override a user expects works, and the schema refuses bad types."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.schema import ConfigError
from harness.config.validation import validate
from harness.config.preflight import CONF_DIR, compose_job, expand_sweep

GROUPS = {group: sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
          for group in ("framework", "model", "dataset", "train", "experiment")}


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_group_option_composes(group, option):
    cfg = compose_job([f"{group}={option}"])
    validate(cfg, cuda_available=True)
    if group in ("framework", "model", "dataset"):
        assert cfg[group].name == option


@pytest.mark.parametrize("override,path,expected", [
    ("train.max_steps=7", "train.max_steps", 7),
    ("train.lr=1e-3", "train.lr", 1e-3),
    ("train.batch_size=2", "train.batch_size", 2),
    ("train.grad_accum=4", "train.grad_accum", 4),
    ("train.max_length=512", "train.max_length", 512),
    ("train.lora.r=32", "train.lora.r", 32),
    ("train.lora.alpha=64", "train.lora.alpha", 64),
    ("train.lora.dropout=0.05", "train.lora.dropout", 0.05),
    ("train.lora.targets=[q_proj,v_proj]", "train.lora.targets", ["q_proj", "v_proj"]),
    ("train.quantization=4bit", "train.quantization", "4bit"),
    ("train.gradient_checkpointing=false", "train.gradient_checkpointing", False),
    ("train.packing=true", "train.packing", True),
    ("train.seed=7", "train.seed", 7),
    ("train.eval_steps=5", "train.eval_steps", 5),
    ("dataset.path=/tmp/some.jsonl", "dataset.path", "/tmp/some.jsonl"),
    ("model=qwen2.5-7b", "model.hub_id", "Qwen/Qwen2.5-7B-Instruct"),
    ("model.weights=random", "model.weights", "random"),
    ("framework.version=1.15.0", "framework.version", "1.15.0"),
    ("repeats=3", "repeats", 3),
    ("fairness=native", "fairness", "native"),
])
def test_user_overrides(override, path, expected):
    cfg = compose_job([override])
    node = cfg
    for part in path.split("."):
        node = node[part]
    assert (list(node) if expected.__class__ is list else node) == expected


def test_schema_refuses_wrong_type():
    with pytest.raises(Exception, match="train.lr"):
        compose_job(["train.lr=fast"])


@pytest.mark.parametrize("override,field", [
    ("train.lora.r=0", "train.lora.r"), ("train.lr=0", "train.lr"), ("train.lr=-1e-4", "train.lr"),
    ("train.batch_size=0", "train.batch_size"), ("train.max_steps=-3", "train.max_steps"),
    ("train.lora.dropout=1.5", "train.lora.dropout"), ("train.quantization=8bit", "train.quantization"),
    ("repeats=0", "repeats"), ("fairness=loose", "fairness"),
])
def test_validation_names_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        validate(compose_job([override]), cuda_available=True)


def test_4bit_needs_cuda():
    with pytest.raises(ConfigError, match="4bit needs a CUDA GPU"):
        validate(compose_job(["train.quantization=4bit"]), cuda_available=False)


def test_plain_multirun_sweeps_every_compared_framework():
    jobs = expand_sweep([], multirun=True)
    assert sorted(j for job in jobs for j in job if j.startswith("framework=")) == [
        "framework=axolotl", "framework=llamafactory", "framework=swift", "framework=trl", "framework=unsloth"]


def test_explicit_framework_list_replaces_the_default_sweep():
    jobs = expand_sweep(["framework=trl,fake", "train.lr=1e-3,2e-3"], multirun=True)
    assert len(jobs) == 4 and all("framework=unsloth" not in job for job in jobs)


def test_accepted_optimizers_and_schedules_are_transformers_names():
    """The parent's lists (it never imports transformers) stay names TrainingArguments accepts."""
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    from harness.config.schema import LR_SCHEDULERS, OPTIMIZERS

    assert set(OPTIMIZERS) <= {o.value for o in OptimizerNames}
    assert set(LR_SCHEDULERS) <= {s.value for s in SchedulerType}


def test_runs_from_a_dataset_file_are_labelled_with_its_name(tmp_path):
    """dataset.path=FILE: run dir, result and report carry the file's name, not the default group's."""
    import json

    from tests.cli import REPO_ROOT, harness, results

    data = tmp_path / "my_clinic.jsonl"
    data.write_text("".join((REPO_ROOT / "harness/assets/tiny/medical_train.jsonl").read_text().splitlines(True)[:30]))
    common = ("framework=fake", "train.max_steps=1", "train.measure_warmup_steps=0", "report=false",
              f"dataset.path={data}", "dataset.num_eval=4")
    run = harness("run", *common, f"results_dir={tmp_path / 'a'}", timeout=120)
    assert run.returncode == 0, run.stderr
    (record,) = results(tmp_path / "a")
    assert record["job"]["dataset"]["name"] == "my_clinic"
    assert "tiny-my_clinic-" in record["run_dir"] and "tiny_medical" not in record["run_dir"]
    # a name the user gives wins over the file's: in the job a run records (as above), which plan prints
    planned = harness("plan", *common, "dataset.name=clinic_v2", f"results_dir={tmp_path / 'b'}", "--json")
    assert planned.returncode == 0, planned.stderr
    (point,) = json.loads(planned.stdout)
    assert point["job"]["dataset"]["name"] == "clinic_v2" and "tiny-clinic_v2-" in point["run_dirs"][0]
    assert not (tmp_path / "b").exists()  # planned, not run


def test_runs_are_labelled_by_the_data_they_train_on():
    """A dataset group's name labels a run only while the group's own files are used: another file, another
    Hub dataset or another train_file names the run after itself (a user's own dataset.name wins)."""
    from omegaconf import OmegaConf

    from harness.config.job import dataset_label

    def label(**fields):
        base = {"name": "tiny_medical", "path": None, "hub_id": None,
                "train_file": "harness/assets/tiny/medical_train.jsonl"}
        return dataset_label(OmegaConf.create({**base, **fields}))

    assert label() == "tiny_medical"
    assert label(path="/data/my_clinic.jsonl") == "my_clinic"
    assert label(hub_id="someorg/cardiology-qa", train_file=None) == "cardiology-qa"
    assert label(train_file="data/other.json") == "other"
    assert label(name="mine", hub_id="someorg/cardiology-qa") == "mine"
    assert dataset_label(OmegaConf.create({"name": "medical", "path": None, "hub_id": "shibing624/medical",
                                           "train_file": "finetune/train_zh_0.json"})) == "medical"


def test_reports_go_beside_the_results_unless_the_results_are_the_default(tmp_path, monkeypatch):
    """reports_dir not given: reports/ for the default results/ (the checkout's own layout), else RESULTS_DIR/reports;
    reports_dir= and HARNESS_REPORTS_DIR still win."""
    monkeypatch.delenv("HARNESS_RESULTS_DIR", raising=False)
    monkeypatch.delenv("HARNESS_REPORTS_DIR", raising=False)
    assert compose_job([]).reports_dir == "reports"
    assert compose_job(["results_dir=results"]).reports_dir == "reports"
    assert compose_job([f"results_dir={Path.cwd() / 'results'}"]).reports_dir == "reports"
    assert compose_job([f"results_dir={tmp_path / 'elsewhere'}"]).reports_dir == str(tmp_path / "elsewhere" / "reports")
    assert compose_job(["results_dir=scratch/results"]).reports_dir == "scratch/results/reports"
    assert compose_job([f"results_dir={tmp_path}", "reports_dir=/r"]).reports_dir == "/r"
    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(tmp_path / "from-env"))
    assert compose_job([]).reports_dir == str(tmp_path / "from-env" / "reports")
    monkeypatch.setenv("HARNESS_REPORTS_DIR", str(tmp_path / "reports-env"))
    assert compose_job([]).reports_dir == str(tmp_path / "reports-env")


def test_a_sweep_into_another_results_dir_keeps_its_report_there(tmp_path, monkeypatch):
    """The report and the reports index of a sweep with results_dir outside the checkout are written under it
    (they used to go to the checkout's reports/; tests/conftest.py fails the session if anything lands there)."""
    from tests.cli import harness

    monkeypatch.delenv("HARNESS_REPORTS_DIR", raising=False)
    results_dir = tmp_path / "elsewhere"
    # an unavailable run: recorded and reported, without training anything
    run = harness("run", "framework=fake", "framework.fault=unavailable", f"results_dir={results_dir}", timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    (report,) = (results_dir / "reports").glob("default-*.html")
    assert f"report: {report}" in run.stdout, run.stdout
    assert (results_dir / "reports" / "index.html").exists()
