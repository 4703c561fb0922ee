"""Bad input never runs: every entry of the catalogue exits 2 with one ``error:`` line naming the culprit
(field, group option, file, line or record), before anything is written under results_dir.

Each test drives the real CLI (``python -m harness run ...``) in a subprocess, as a user does.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli import REPO_ROOT, harness

TINY_TRAIN = REPO_ROOT / "harness/assets/tiny/medical_train.jsonl"
FAST = ("framework=fake", "train.max_steps=1", "train.measure_warmup_steps=0", "report=false")
FAST_ANY_FRAMEWORK = FAST[1:]  # for tests that name their own framework (a key given twice is refused)


def fast(*overrides: str) -> tuple[str, ...]:
    """FAST without the keys ``overrides`` set, then ``overrides``: a key given twice is refused on its own."""
    keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    return (*(o for o in FAST if o.split("=", 1)[0] not in keys), *overrides)


def refused(tmp_path: Path, *args: str, culprit: str | tuple[str, ...]) -> str:
    """Run the CLI with ``args``; assert it refused with one line naming ``culprit``; return the line."""
    results_dir = tmp_path / "results"
    run = harness("run", *args, f"results_dir={results_dir}", timeout=60)
    lines = run.stderr.splitlines()
    assert run.returncode == 2, f"rc={run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert len(lines) == 1 and lines[0].strip(), f"expected one error line, got:\n{run.stderr}"
    line = lines[0]
    assert line.startswith("error:"), line
    for name in (culprit,) if isinstance(culprit, str) else culprit:
        assert name in line, f"{name!r} not named in: {line}"
    assert not results_dir.exists() or not any(results_dir.iterdir()), \
        f"written under results_dir: {sorted(str(p) for p in results_dir.rglob('*'))}"
    assert "running in" not in run.stdout
    return line


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                            for r in rows), encoding="utf-8")
    return path


def record(i: int) -> dict:
    return {"instruction": f"question {i}?", "input": "", "output": f"answer {i}."}


# ---- unknown group options (Hydra composition errors) -----------------------------------------------------
@pytest.mark.parametrize("override,group,option", [
    ("framework=bogus", "framework", "bogus"),
    ("model=qwen9b", "model", "qwen9b"),
    ("dataset=nope", "dataset", "nope"),
    ("experiment=nothing_here", "experiment", "nothing_here"),
])
def test_unknown_group_option(tmp_path, override, group, option):
    # the framework group is the framework registry, whose message is "Unknown framework X. Available: ..."
    listing = "Available:" if group == "framework" else "available:"
    line = refused(tmp_path, *fast(override), culprit=(f"{group}={option}", listing))
    assert "Config search path" not in line


def test_unknown_option_in_a_sweep_refuses_the_whole_sweep(tmp_path):
    # the valid first job (fake) must not run before the bad second one is found
    line = refused(tmp_path, *FAST_ANY_FRAMEWORK, "framework=fake,bogus", "-m", culprit="framework=bogus")
    assert "fake" in line  # listed among the available options


def test_bad_value_in_a_later_sweep_job_refuses_before_the_first(tmp_path):
    refused(tmp_path, *FAST, "train.lr=1e-4,0", "-m", culprit="train.lr")


# ---- numeric values ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("override,field", [
    ("train.lr=0", "train.lr"),
    ("train.lr=-1e-4", "train.lr"),
    ("train.lr=nan", "train.lr"),
    ("train.lora.r=-1", "train.lora.r"),
    ("train.max_steps=0", "train.max_steps"),
    ("train.batch_size=0", "train.batch_size"),
    ("repeats=0", "repeats"),
    ("timeout_s=0", "timeout_s"),
])
def test_zero_or_negative_number(tmp_path, override, field):
    line = refused(tmp_path, *fast(override), culprit=field)
    assert "twice" not in line


def test_max_length_beyond_model_positions(tmp_path):
    refused(tmp_path, *FAST, "model=tiny", "train.max_length=4096",
            culprit=("train.max_length", "max_position_embeddings=2048"))


def test_4bit_without_cuda(tmp_path):
    refused(tmp_path, *FAST, "train.quantization=4bit", culprit=("train.quantization", "CUDA"))


# ---- wrong type and override syntax -----------------------------------------------------------------------
@pytest.mark.parametrize("override,culprit", [
    ("train.lr=fast", ("train.lr", "fast")),
    ("train.nope=1", "train.nope"),
])
def test_wrong_type_or_unknown_field(tmp_path, override, culprit):
    refused(tmp_path, *FAST, override, culprit=culprit)


@pytest.mark.parametrize("args,culprit", [
    (("train.lr=[",), "train.lr=["),
    (("train.lr=[", "-m"), "train.lr=["),
    (("train.lr",), "train.lr"),
    (("=5",), "=5"),
    (("--bogus",), "--bogus"),
    (("--cfg", "job"), "--cfg"),
    (("framework=fake,trl",), "framework=fake,trl"),
])
def test_bad_override_syntax(tmp_path, args, culprit):
    line = refused(tmp_path, *fast(*(a for a in args if not a.startswith("-"))), *(a for a in args if a.startswith("-")),
                   culprit=culprit)
    assert "twice" not in line


# ---- overrides that contradict each other (Hydra would silently keep the last, or dataset.path win) --------
@pytest.mark.parametrize("args,culprit", [
    (("train.lr=1e-4", "train.lr=2e-4"), ("train.lr", "twice", "train.lr=1e-4", "train.lr=2e-4")),
    (("train.lr=1e-4", "train.lr=2e-4", "-m"), ("train.lr", "twice")),
    (("train.lr=1e-4", "+train.lr=2e-4"), ("train.lr", "twice")),
    (("train.lr=1e-4,2e-4", "train.lr=3e-4", "-m"), ("train.lr", "twice", "train.lr=A,B")),
])
def test_a_key_given_twice(tmp_path, args, culprit):
    refused(tmp_path, *FAST, *args, culprit=culprit)


def test_framework_given_twice(tmp_path):
    # FAST names framework=fake; a second framework= used to replace it silently
    refused(tmp_path, *FAST, "framework=trl", culprit=("framework", "twice", "framework=fake", "framework=trl"))


@pytest.mark.parametrize("other", ["dataset.eval_file", "dataset.train_file", "dataset.hub_id"])
def test_dataset_path_beside_what_it_would_ignore(tmp_path, other):
    path = write_lines(tmp_path / "mine.jsonl", [record(i) for i in range(20)])
    value = "someorg/somedata" if other == "dataset.hub_id" else str(write_lines(tmp_path / "other.jsonl", [record(99)]))
    refused(tmp_path, *FAST, f"dataset.path={path}", f"{other}={value}", "dataset.num_eval=4",
            culprit=(other, "dataset.path", "conflicts"))


def test_dataset_path_beside_a_null_eval_file_is_no_conflict(tmp_path):
    path = write_lines(tmp_path / "mine.jsonl", [record(i) for i in range(20)])
    run = harness("plan", *FAST, f"dataset.path={path}", "dataset.eval_file=null", "dataset.num_eval=4", timeout=60)
    assert run.returncode == 0, run.stderr


# ---- dataset files ----------------------------------------------------------------------------------------
def test_dataset_path_missing(tmp_path):
    refused(tmp_path, *FAST, "dataset.path=/nonexistent.jsonl", culprit="/nonexistent.jsonl")


def test_no_training_data(tmp_path):
    # the shipped group's train file unset and nothing in its place (was an AssertionError, exit 1)
    refused(tmp_path, *FAST, "dataset.train_file=null", culprit=("tiny_medical", "no training data", "dataset.path"))


def test_dataset_path_is_a_directory(tmp_path):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    refused(tmp_path, *FAST, f"dataset.path={folder}", culprit=str(folder))


@pytest.mark.parametrize("content", ["", "\n\n", "[]"])
def test_empty_dataset(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    refused(tmp_path, *FAST, f"dataset.path={path}", culprit=(str(path), "empty"))


def test_malformed_json_line_names_the_line(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", [record(0), record(1), '{"instruction": "x", oops}', record(3)])
    refused(tmp_path, *FAST, f"dataset.path={path}", culprit=(str(path), "line 3"))


def test_malformed_json_array_names_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": "c" "output": "d"}\n]\n')
    refused(tmp_path, *FAST, f"dataset.path={path}", culprit=(str(path), "line 3"))


def test_binary_dataset_file(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\xff\xfe\x00garbage\x80")
    refused(tmp_path, *FAST, f"dataset.path={path}", culprit=str(path))


@pytest.mark.parametrize("missing", ["instruction", "output"])
def test_record_missing_field_names_the_record(tmp_path, missing):
    bad = {k: v for k, v in record(2).items() if k != missing}
    path = write_lines(tmp_path / "data.jsonl", [record(0), record(1), bad, record(3)])
    refused(tmp_path, *FAST, f"dataset.path={path}", culprit=(str(path), "record 2", f"'{missing}'"))


def test_record_not_an_object(tmp_path):
    path = write_lines(tmp_path / "data.jsonl", [record(0), [1, 2]])
    refused(tmp_path, *FAST, f"dataset.path={path}", culprit=(str(path), "record 1"))


def test_eval_split_all_duplicates_of_train(tmp_path):
    """Eval records split off the end of dataset.path all repeat train records: nothing is held out."""
    train = [record(i) for i in range(20)]
    path = write_lines(tmp_path / "dup.jsonl", train + train[:4])
    refused(tmp_path, *FAST, f"dataset.path={path}", "dataset.num_eval=4",
            culprit=("dataset.num_eval", "empty", str(path)))


def test_eval_file_all_in_train(tmp_path):
    eval_file = write_lines(tmp_path / "eval.jsonl", TINY_TRAIN.read_text(encoding="utf-8").splitlines()[:5])
    refused(tmp_path, *FAST, f"dataset.eval_file={eval_file}", "dataset.num_eval=5",
            culprit=("dataset.num_eval", "empty", str(eval_file)))


# ---- model ------------------------------------------------------------------------------------------------
def test_model_folder_without_config_json(tmp_path):
    folder = tmp_path / "model_without_config"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{}")
    refused(tmp_path, *FAST, f"model.hub_id={folder}", culprit=("model.hub_id", str(folder), "config.json"))


def test_model_path_that_does_not_exist(tmp_path):
    refused(tmp_path, *FAST, "model.hub_id=/some/dir/without/config",
            culprit=("model.hub_id", "/some/dir/without/config"))


def test_model_config_json_malformed(tmp_path):
    folder = tmp_path / "broken_model"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    refused(tmp_path, *FAST, f"model.hub_id={folder}", culprit=("model.hub_id", "config.json"))


def test_model_not_in_offline_mirror(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    results_dir = tmp_path / "results"
    run = harness("run", *FAST, "model.hub_id=Qwen/Nope-1B", f"results_dir={results_dir}", timeout=60,
                  env={"HARNESS_HUB_MIRROR": str(mirror)})
    assert run.returncode == 2, run.stderr
    (line,) = run.stderr.splitlines()
    assert line.startswith("error:") and "model.hub_id" in line and "Qwen/Nope-1B" in line
    assert not results_dir.exists()


# ---- unexpected failures inside the checks ----------------------------------------------------------------
def test_unexpected_preflight_exception_is_one_line(tmp_path, monkeypatch):
    """A bug in a check still ends with one readable line, not a traceback (and nothing is written)."""
    import io
    import sys

    import harness.cli.run as cli
    import harness.config.preflight as preflight_mod

    def boom(*_a, **_k):
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setattr(preflight_mod, "preflight", boom)
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    code = cli.main([*FAST, f"results_dir={tmp_path / 'results'}"])
    (line,) = err.getvalue().splitlines()
    assert code == 1 and line.startswith("error: preflight failed unexpectedly (RuntimeError: something broke")
    assert "HARNESS_DEBUG" in line
    assert not (tmp_path / "results").exists()


def test_raw_input_exception_in_preflight_exits_2(tmp_path, monkeypatch):
    import io
    import sys

    import harness.cli.run as cli
    import harness.config.preflight as preflight_mod

    def raw(*_a, **_k):
        raise PermissionError(13, "Permission denied", "/data/train.jsonl")

    monkeypatch.setattr(preflight_mod, "preflight", raw)
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    code = cli.main([*FAST, f"results_dir={tmp_path / 'results'}"])
    (line,) = err.getvalue().splitlines()
    assert code == 2 and line.startswith("error:") and "/data/train.jsonl" in line


def test_model_cache_cli_names_a_model_without_config(tmp_path):
    """``python -m harness.worker.model_cache`` (builds random-weight models before a sweep): a Hub id with no
    config.json in the mirror is refused in one line naming the id, and nothing is built."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "harness.worker.model_cache", "Qwen/No-Such-Model"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT),
                              "HARNESS_HUB_MIRROR": str(tmp_path / "mirror"), "HARNESS_CACHE": str(tmp_path / "cache")})
    lines = run.stderr.splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert lines[0].startswith("error:") and "Qwen/No-Such-Model" in lines[0]
    assert not (tmp_path / "cache").exists()


def test_overhead_benchmark_passes_the_harness_refusal_through(tmp_path):
    """benchmarks/overhead.py with an unknown --experiment: the harness's one line, exit 2, nothing written."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "overhead.py"), "--rounds", "1",
                          "--experiment", "nope", "--out", str(tmp_path / "out")],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    lines = run.stderr.splitlines()
    assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and "nope" in lines[0], run.stderr
    assert not (tmp_path / "out").exists()


# ---- framework version and interpreter (issue 12, points 3 and 4) -----------------------------------------
def test_unknown_framework_version_is_refused_not_unavailable(tmp_path):
    """A typo in framework.version is bad input (exit 2 naming the pinned versions), not an 'unavailable' run."""
    line = refused(tmp_path, *FAST_ANY_FRAMEWORK, "framework=trl", "framework.version=9.9.9",
                   culprit=("framework.version=9.9.9", "1.16.0"))
    assert "known versions" in line


def test_unknown_framework_version_under_the_current_interpreter(tmp_path):
    refused(tmp_path, *FAST_ANY_FRAMEWORK, "framework=trl", "framework.python=current", "framework.version=9.9.9",
            culprit=("framework.version=9.9.9", "1.16.0"))


def test_framework_python_that_does_not_exist(tmp_path):
    refused(tmp_path, *FAST, "framework.python=/nonexistent/python", culprit=("framework.python", "/nonexistent/python"))


def test_framework_python_that_is_not_python(tmp_path):
    refused(tmp_path, *FAST_ANY_FRAMEWORK, "framework=trl", "framework.python=/bin/ls", culprit=("framework.python", "/bin/ls"))


@pytest.mark.parametrize("folder", ["/proc/x", "/proc/x/y"])
def test_results_dir_not_writable(tmp_path, folder):
    run = harness("run", *FAST, f"results_dir={folder}", timeout=60)
    (line,) = run.stderr.splitlines()
    assert run.returncode == 2 and line.startswith("error: results_dir=") and folder in line, run.stderr


def test_results_dir_is_a_file(tmp_path):
    file = tmp_path / "a_file"
    file.write_text("")
    run = harness("run", *FAST, f"results_dir={file}", timeout=60)
    (line,) = run.stderr.splitlines()
    assert run.returncode == 2 and "results_dir" in line and str(file) in line, run.stderr
    assert file.read_text() == ""


def test_reports_dir_not_writable(tmp_path):
    refused(tmp_path, "framework=fake", "train.max_steps=1", "report=true", "reports_dir=/proc/y",
            culprit=("reports_dir=/proc/y",))


# ---- values only a framework would have refused, now refused in preflight (point 5) ------------------------
@pytest.mark.parametrize("override,culprit", [
    ("train.lora.targets=[nonexistent_proj]", ("train.lora.targets", "nonexistent_proj", "q_proj")),
    ("train.lora.targets=[q_proj,nonexistent_proj]", ("train.lora.targets", "nonexistent_proj")),
    ("train.lora.targets=[all-linear]", ("train.lora.targets", "all-linear")),
    ("train.optimizer=sgdx", ("train.optimizer", "sgdx", "adamw_torch")),
    ("train.lr_scheduler=bogus", ("train.lr_scheduler", "bogus", "cosine")),
    ("train.seed=-1", ("train.seed", "-1")),
    ("model.init_seed=-1", ("model.init_seed", "-1")),
    ("train.seed=4294967296", ("train.seed",)),
])
def test_value_a_framework_would_refuse(tmp_path, override, culprit):
    refused(tmp_path, *FAST, override, culprit=culprit)


def test_lora_targets_checked_against_a_mirrored_hub_model(tmp_path):
    """A Hub id resolved through the offline mirror: its config.json (model_type qwen2) names the modules,
    no weights needed."""
    model = tmp_path / "mirror" / "Qwen" / "Qwen2.5-0.5B-Instruct"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": 32768}))
    results_dir = tmp_path / "results"
    run = harness("run", *FAST, "model=qwen2.5-0.5b", "model.weights=random", "train.lora.targets=[qkv_proj]",
                  f"results_dir={results_dir}", timeout=60, env={"HARNESS_HUB_MIRROR": str(tmp_path / "mirror")})
    (line,) = run.stderr.splitlines()
    assert run.returncode == 2 and "train.lora.targets" in line and "qkv_proj" in line and "qwen2" in line, run.stderr
    assert not results_dir.exists()


def test_lora_targets_read_from_safetensors_weights(tmp_path):
    """A model whose model_type the harness does not know: the module names come from its weight files."""
    import struct

    from harness.config.input_checks import check_lora_targets
    from omegaconf import OmegaConf

    folder = tmp_path / "model"
    folder.mkdir()
    header = json.dumps({"__metadata__": {}, "transformer.h.0.attn.c_attn.weight": {
        "dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    cfg = OmegaConf.create({"model": {"hub_id": str(folder)}, "train": {"lora": {"targets": ["c_attn"]}}})
    check_lora_targets(cfg, folder, {"model_type": "gpt2"})  # accepted: c_attn is in the weights
    cfg.train.lora.targets = ["q_proj"]
    with pytest.raises(ValueError, match="'q_proj' is not a module .*c_attn"):
        check_lora_targets(cfg, folder, {"model_type": "gpt2"})


def test_num_eval_beyond_the_eval_file(tmp_path):
    """More held-out records than the eval file has is refused naming the count, never silently capped."""
    available = len((REPO_ROOT / "harness/assets/tiny/medical_eval.jsonl").read_text().splitlines())
    refused(tmp_path, *FAST, "dataset.num_eval=100000", culprit=("dataset.num_eval=100000", f"only {available} records"))


def test_num_eval_beyond_a_split_file(tmp_path):
    path = write_lines(tmp_path / "data.jsonl", [record(i) for i in range(10)])
    refused(tmp_path, *FAST, f"dataset.path={path}", "dataset.num_eval=10",
            culprit=("dataset.num_eval=10", str(path), "only 10 records", "at most 9"))


# ---- sweeps and keys (point 8) -------------------------------------------------------------------------------
@pytest.mark.parametrize("sweep,culprit", [
    ("framework=fake,fake", "framework=fake,fake"),
    ("train.lr=1e-4,0.0001", "train.lr=1e-4,0.0001"),
])
def test_same_job_twice_in_a_sweep(tmp_path, sweep, culprit):
    refused(tmp_path, *FAST_ANY_FRAMEWORK, sweep, "-m", culprit=("same job twice", culprit))


def test_duplicate_framework_in_a_sweep(tmp_path):
    refused(tmp_path, "framework=trl,trl", "train.max_steps=1", "report=false", "-m",
            culprit=("same job twice", "framework=trl,trl"))


@pytest.mark.parametrize("override,culprit", [
    ("+foo=1", ("foo", "+foo=1", "unknown key")),
    ("+train.foo=1", ("train.foo", "+train.foo=1", "unknown key")),
    ("++train.lora.foo=1", ("train.lora.foo", "unknown key")),
])
def test_unknown_key_added_with_plus(tmp_path, override, culprit):
    refused(tmp_path, *FAST, override, culprit=culprit)


def test_removed_field(tmp_path):
    refused(tmp_path, *FAST, "~train.seed", culprit="train.seed")


# ---- report and audit on result files that parse but have the wrong shape (point 4) -------------------------
@pytest.fixture(scope="module")
def good_results(tmp_path_factory) -> Path:
    """One real result of the fake framework (the real runner), shared by the report/audit tests."""
    root = tmp_path_factory.mktemp("good")
    run = harness("run", *FAST, f"results_dir={root / 'results'}", timeout=120)
    assert run.returncode == 0, run.stderr
    return root / "results"


def good_record(results_dir: Path) -> dict:
    (path,) = [p for p in results_dir.rglob("result.json") if ".hydra" not in p.parts]
    return json.loads(path.read_text())


def _broken(record: dict, change: str) -> object:
    if change == "list":
        return []
    if change == "status 3":
        return {"status": 3}
    broken = json.loads(json.dumps(record))
    if change == "no status":
        del broken["status"]
    elif change == "no framework":
        del broken["framework"]
    elif change == "framework text":
        broken["framework"] = "trl"
    elif change == "train number":
        broken["train"] = 3
    elif change == "metric text":
        broken["train"]["tokens_per_s"] = "fast"
    elif change == "checks object":
        broken["checks"] = {"a": 1}
    elif change == "phases text":
        broken["phases"]["result_written"] = "yesterday"
    elif change == "job.model null":
        broken["job"]["model"] = None
    elif change == "train.log text":
        broken["train"]["log"] = "x"
    elif change == "packages text":
        broken["framework"]["packages"] = "x"
    return broken


SHAPES = ["list", "status 3", "no status", "no framework", "framework text", "train number", "metric text",
          "checks object", "phases text", "job.model null", "train.log text", "packages text"]


@pytest.fixture(scope="module")
def wrong_shapes(tmp_path_factory, good_results) -> dict[str, Path]:
    """Each broken shape of the good record, in a results folder of its own: {change: its result.json}."""
    root = tmp_path_factory.mktemp("bad")
    paths = {}
    for i, change in enumerate(SHAPES):
        paths[change] = root / f"shape{i}" / "r0" / "result.json"
        paths[change].parent.mkdir(parents=True)
        paths[change].write_text(json.dumps(_broken(good_record(good_results), change)))
    return paths


@pytest.fixture(scope="module", params=["report", "audit"])
def shape_runs(request, tmp_path_factory, good_results, wrong_shapes):
    """The command over the good results and every broken file at once, then over the broken files alone: two
    real CLI calls per command for all the shapes (each a folder of its own, so one's skip line names it)."""
    command = request.param
    folders = [str(path.parents[1]) for path in wrong_shapes.values()]
    extra = ("--out", str(tmp_path_factory.mktemp("reports"))) if command == "report" else ()
    mixed = harness(command, str(good_results), *folders, *extra, timeout=120)
    alone = harness(command, *folders, *extra, timeout=120)
    return command, mixed, alone


def test_wrong_shape_results_leave_the_good_ones_and_end_in_one_line_alone(shape_runs):
    _, mixed, alone = shape_runs
    assert mixed.returncode == 0 and "Traceback" not in mixed.stderr, mixed.stderr
    # only broken files: one skip line per file, then one error line, exit 2
    lines = alone.stderr.splitlines()
    assert alone.returncode == 2 and lines[-1].startswith("error:") and "Traceback" not in alone.stderr, alone.stderr
    assert len(lines) == len(SHAPES) + 1, alone.stderr


@pytest.mark.parametrize("change", SHAPES)
def test_wrong_shape_result_is_skipped_naming_it(shape_runs, wrong_shapes, change):
    _, mixed, alone = shape_runs
    bad = str(wrong_shapes[change])
    for run in (mixed, alone):
        (line,) = [l for l in run.stderr.splitlines() if bad in l]
        assert line.startswith(f"skipped: {bad}"), line


def test_report_reference_that_is_not_in_the_results(tmp_path, good_results):
    out = tmp_path / "reports"
    run = harness("report", str(good_results), "--reference", "nonexistent", "--out", str(out), timeout=120)
    (line,) = run.stderr.splitlines()
    assert run.returncode == 2 and line.startswith("error:") and "nonexistent" in line and "fake" in line, run.stderr
    assert not out.exists()


def test_audit_bad_argument_is_one_line(tmp_path, good_results):
    run = harness("audit", str(good_results), "--fairness", "lenient", timeout=60)
    (line,) = run.stderr.splitlines()
    assert run.returncode == 2 and line.startswith("error: audit:") and "lenient" in line


def test_unexpected_error_in_a_command_is_one_line(monkeypatch, capsys):
    """A bug (or input no check foresaw) in report/audit/compare/env ends with one line and exit 1."""
    import harness.__main__ as cli
    import harness.cli.report as report_cli

    def boom(_argv):
        raise KeyError("something\nsecond line")

    monkeypatch.setattr(report_cli, "main", boom)
    monkeypatch.delenv("HARNESS_DEBUG", raising=False)
    assert cli.main(["report"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: report failed unexpectedly (KeyError") and "HARNESS_DEBUG" in line


# ---- no Hub here: refused at once, in one line (not a worker failing after a minute of retries) ------------
def _refused_offline(tmp_path: Path, *args: str) -> tuple[str, float]:
    import time

    started = time.monotonic()
    env = {"HF_ENDPOINT": "https://hub.invalid", "HF_HOME": str(tmp_path / "hf-home")}  # .invalid never resolves
    env_clear = {k: "" for k in ("HARNESS_HUB_MIRROR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    run = harness("run", *args, f"results_dir={tmp_path / 'results'}", "report=false", timeout=120,
                  env={**env_clear, **env})
    lines = run.stderr.splitlines()
    assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), run.stdout + run.stderr
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
    return lines[0], time.monotonic() - started


def test_a_hub_model_the_machine_cannot_get_is_refused_before_any_run(tmp_path):
    line, _ = _refused_offline(tmp_path, "model=qwen2.5-7b")
    assert "model.hub_id" in line and "Qwen/Qwen2.5-7B-Instruct" in line and "hub.invalid unreachable" in line
    assert "HARNESS_HUB_MIRROR" in line


def test_a_hub_dataset_file_the_machine_cannot_get_is_refused_in_one_line(tmp_path):
    line, _ = _refused_offline(tmp_path, "dataset.hub_id=nobody/nothing")
    assert "dataset.hub_id" in line and "nobody/nothing" in line and "hub.invalid unreachable" in line


def test_a_misspelt_key_is_named_with_the_field_it_was_likely_meant_for(tmp_path):
    for override, near in (("train.batchsize=4", "batch_size"), ("train.lora.alhpa=8", "alpha")):
        proc = harness("run", override, f"results_dir={tmp_path / 'r'}", timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].endswith(f"did you mean {near!r}?"), proc.stderr
    far = harness("run", "train.zzz=1", f"results_dir={tmp_path / 'r'}", timeout=120)
    assert far.returncode == 2 and "did you mean" not in far.stderr
    assert not (tmp_path / "r").exists()
