"""Dataset formats: detection, conversion to the one conversation form, and every bad-record message.

Unit tests call ``harness.data.dataset`` directly; the CLI tests at the end check that the same messages reach a
user as one ``error:`` line with exit code 2 before anything is written.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config.schema import ConfigError
from harness.data.dataset import load_records, prepare, read_dataset
from harness.data.formats import format_of
from harness.hub import PACKAGE_ROOT
from harness.data.tokenize import IGNORE_INDEX, messages_for, supervised_turns, tokenize_record
from tests.test_bad_input import FAST, refused

SHAREGPT = PACKAGE_ROOT / "assets" / "conversations" / "medical_sharegpt.json"
MESSAGES = PACKAGE_ROOT / "assets" / "conversations" / "medical_messages.jsonl"
TINY = PACKAGE_ROOT / "assets" / "tiny"


def jsonl(path: Path, rows: list, *, bom: bool = False) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def sg(*turns: tuple[str, str], **extra) -> dict:
    return {"conversations": [{"from": f, "value": v} for f, v in turns], **extra}


def msg(*turns: tuple[str, str]) -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in turns]}


ALPACA = {"instruction": "头痛怎么办？", "input": "", "output": "多休息。"}
SG = sg(("human", "嗓子疼"), ("gpt", "多喝水。"), ("human", "要吃药吗？"), ("gpt", "一般不用。"))
MSG = msg(("system", "你是医生。"), ("user", "嗓子疼"), ("assistant", "多喝水。"))


def error(path: Path, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        load_records(path, **kw)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


# ---- detection and conversion -------------------------------------------------------------------------
@pytest.mark.parametrize("row,fmt", [(ALPACA, "alpaca"), (SG, "sharegpt"), (MSG, "messages"),
                                     ({"messages": [{"from": "human", "value": "x"}]}, "sharegpt"),
                                     ({"conversations": [{"role": "user", "content": "x"}]}, "messages"),
                                     ({"text": "x"}, None), ([1], None)])
def test_format_of_a_record(row, fmt):
    assert format_of(row) == fmt


@pytest.mark.parametrize("row,fmt", [(ALPACA, "alpaca"), (SG, "sharegpt"), (MSG, "messages")])
def test_auto_detects_from_the_first_record_and_says_so(tmp_path, capsys, row, fmt):
    path = jsonl(tmp_path / "d.jsonl", [row] * 3)
    assert read_dataset(path)[1] == fmt
    dataset = {"name": "d", "path": str(path), "train_file": None, "eval_file": None, "hub_id": None,
               "num_eval": 1, "num_train": None, "format": "auto", "loss_on": "all_assistant"}
    with pytest.raises(ConfigError):  # three identical records: the held-out one repeats a train record
        prepare(_Config(dataset))
    assert f"detected {fmt} format" in capsys.readouterr().out


class _Config(dict):
    """Attribute access over a dict, as DictConfig gives prepare()."""
    __getattr__ = dict.__getitem__


def test_sharegpt_becomes_the_conversation_form():
    row = sg(("system", " 你是医生。 "), ("human", "嗓子疼\n"), ("gpt", "多喝水。"))
    path_records = _records([row], "sharegpt")
    assert path_records == [{"messages": [{"role": "system", "content": "你是医生。"},
                                          {"role": "user", "content": "嗓子疼"},
                                          {"role": "assistant", "content": "多喝水。"}],
                             "loss_on": "all_assistant"}]


def test_sharegpt_top_level_system_becomes_the_first_turn():
    record = _records([sg(("human", "a"), ("gpt", "b"), system="你是药师。")], "sharegpt")[0]
    assert record["messages"][0] == {"role": "system", "content": "你是药师。"}


def test_messages_and_sharegpt_of_the_same_chat_are_the_same_records():
    a = _records([sg(("human", "q1"), ("gpt", "a1"), ("human", "q2"), ("gpt", "a2"))], "sharegpt", "last_assistant")
    b = _records([msg(("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2"))], "messages",
                 "last_assistant")
    assert a == b and a[0]["loss_on"] == "last_assistant"


def test_alpaca_records_are_unchanged_by_the_formats(tmp_path):
    """The prepared alpaca record is what it was before conversations existed (same digest, same hash)."""
    path = jsonl(tmp_path / "a.jsonl", [{"instruction": " q ", "input": None, "output": "a", "extra": 1}])
    assert load_records(path) == load_records(path, fmt="alpaca") == [{"instruction": "q", "input": "", "output": "a"}]


def test_bom_is_read_as_utf8(tmp_path):
    rows = [ALPACA, {**ALPACA, "output": "多喝水"}]
    assert load_records(jsonl(tmp_path / "bom.jsonl", rows, bom=True)) == load_records(jsonl(tmp_path / "no.jsonl", rows))
    array = tmp_path / "bom.json"
    array.write_bytes(b"\xef\xbb\xbf" + json.dumps([SG]).encode())
    assert load_records(array)[0]["messages"][1]["content"] == "多喝水。"


def test_shipped_samples_are_multi_turn_with_system_turns():
    for path, fmt in ((SHAREGPT, "sharegpt"), (MESSAGES, "messages")):
        records, found = read_dataset(path)
        assert found == fmt and 40 <= len(records) <= 60
        assert all(len(r["messages"]) >= 4 for r in records)
        assert sum(r["messages"][0]["role"] == "system" for r in records) >= 5
        assert any(sum(m["role"] == "assistant" for m in r["messages"]) == 3 for r in records)


def _records(rows: list, fmt: str, loss_on: str = "all_assistant") -> list:
    from harness.data.dataset import records_from_rows

    return records_from_rows(rows, [], "test", fmt, loss_on)[0]


# ---- supervised tokens -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TINY))


def _supervised_text(tokenizer, record) -> str:
    item = tokenize_record(tokenizer, record, 1 << 30)
    return tokenizer.decode([t for t, lab in zip(item["input_ids"], item["labels"]) if lab != IGNORE_INDEX])


def test_all_assistant_supervises_every_assistant_turn_and_its_end_token(tokenizer):
    record = _records([sg(("human", "q1"), ("gpt", "答一"), ("human", "q2"), ("gpt", "答二"))], "sharegpt")[0]
    assert supervised_turns(record) == [1, 3]
    assert _supervised_text(tokenizer, record) == "答一<|im_end|>\n答二<|im_end|>\n"


def test_last_assistant_supervises_only_the_last_turn(tokenizer):
    record = _records([sg(("human", "q1"), ("gpt", "答一"), ("human", "q2"), ("gpt", "答二"))], "sharegpt",
                      "last_assistant")[0]
    assert _supervised_text(tokenizer, record) == "答二<|im_end|>\n"


def test_a_system_turn_replaces_the_default_system_prompt(tokenizer):
    own = _records([MSG], "messages")[0]
    default = _records([msg(("user", "嗓子疼"), ("assistant", "多喝水。"))], "messages")[0]
    own_text = tokenizer.apply_chat_template(messages_for(own), tokenize=False)
    default_text = tokenizer.apply_chat_template(messages_for(default), tokenize=False)
    assert own_text.startswith("<|im_start|>system\n你是医生。<|im_end|>\n") and "Qwen" not in own_text
    assert "You are Qwen" in default_text


def test_single_turn_alpaca_labels_are_the_prompt_completion_split(tokenizer):
    """Alpaca: the evaluator's supervised tokens are the completion after the templated prompt, as before."""
    item = tokenize_record(tokenizer, ALPACA, 1 << 30)
    prompt = tokenizer.apply_chat_template(messages_for(ALPACA)[:-1], tokenize=False, add_generation_prompt=True)
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert item["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert item["labels"][n_prompt:] == item["input_ids"][n_prompt:]


def test_assistant_mask_template_renders_like_the_models_template(tokenizer):
    from harness.frameworks.sft_common import check_same_rendering

    check_same_rendering(tokenizer, read_dataset(SHAREGPT)[0] + read_dataset(MESSAGES)[0])


# ---- bad records: one line naming file, record, line and what is wrong ---------------------------------
@pytest.mark.parametrize("bad,expected", [
    ({"instruction": "q", "output": 42}, ("record 1 (line 2)", "'output' is a number, expected a string")),
    ({"instruction": ["q"], "output": "a"}, ("record 1 (line 2)", "'instruction' is a list, expected a string")),
    ({"instruction": "q", "input": 3, "output": "a"}, ("record 1 (line 2)", "'input' is a number")),
    ({"instruction": "q"}, ("record 1 (line 2)", "has no 'output'")),
    ({"instruction": "q", "output": "  "}, ("record 1 (line 2)", "'output' is empty")),
    (SG, ("record 1 (line 2)", "a sharegpt record", "record 0 (line 1) is alpaca", "mixed formats")),
])
def test_bad_alpaca_record(tmp_path, bad, expected):
    message = error(jsonl(tmp_path / "d.jsonl", [ALPACA, bad, ALPACA]))
    for part in expected:
        assert part in message, message


@pytest.mark.parametrize("bad,expected", [
    (sg(("human", "q"), ("tool", "x")), ("turn 1", "unknown role 'tool'", "human, user, gpt, assistant, system")),
    (sg(("human", "q"), ("gpt", " ")), ("turn 1 (gpt) is empty",)),
    (sg(("human", "q"), ("gpt", "a"), ("human", "q2")), ("does not end with an assistant turn", "'human'")),
    (sg(("human", "q"), ("human", "q2"), ("gpt", "a")), ("turn 1 is 'human' where a assistant turn belongs",)),
    (sg(("gpt", "a"),), ("turn 0 is 'gpt' where a user turn belongs",)),
    (sg(("human", "q"), ("system", "s"), ("gpt", "a")), ("turn 1 is a system turn", "only the first")),
    (sg(("system", "s"),), ("has only a system turn",)),
    (sg(("system", "s"), ("human", "q"), ("gpt", "a"), system="t"), ("both a 'system' field and a system turn",)),
    ({"conversations": []}, ("'conversations' is empty",)),
    ({"conversations": "hi"}, ("'conversations' is a string, expected a list",)),
    ({"conversations": [{"from": "human", "value": 7}, {"from": "gpt", "value": "a"}]},
     ("turn 0: 'value' is a number, expected a string",)),
    ({"conversations": [{"value": "q"}]}, ("turn 0 has no 'from'",)),
    ({"conversations": ["q", "a"]}, ("turn 0 is a string, expected an object",)),
    (MSG, ("a messages record", "mixed formats")),
    (ALPACA, ("an alpaca record", "mixed formats")),
])
def test_bad_sharegpt_record(tmp_path, bad, expected):
    message = error(jsonl(tmp_path / "d.jsonl", [SG, SG, bad]))
    assert "record 2 (line 3)" in message, message
    for part in expected:
        assert part in message, message


@pytest.mark.parametrize("bad,expected", [
    (msg(("user", "q"), ("developer", "x")), ("unknown role 'developer'", "user, assistant, system")),
    (msg(("user", "q"), ("assistant", "")), ("turn 1 (assistant) is empty",)),
    (msg(("system", "s"), ("user", "q")), ("does not end with an assistant turn",)),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]}, {"role": "assistant", "content": "a"}]},
     ("turn 0: 'content' is a list, expected a string",)),
])
def test_bad_messages_record(tmp_path, bad, expected):
    message = error(jsonl(tmp_path / "d.jsonl", [MSG, bad]))
    assert "record 1 (line 2)" in message, message
    for part in expected:
        assert part in message, message


def test_explicit_format_refuses_another_format(tmp_path):
    message = error(jsonl(tmp_path / "d.jsonl", [SG]), fmt="alpaca")
    assert "record 0 (line 1) is a sharegpt record, but dataset.format asks for alpaca (leave dataset.format out" \
        in message


def test_unknown_record_shape_names_the_expected_formats(tmp_path):
    message = error(jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "a"}]))
    assert "record 0 (line 1)" in message and "question, answer" in message
    for fmt in ("alpaca", "sharegpt", "messages"):
        assert fmt in message


def test_records_in_a_json_array_are_named_without_a_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([SG, sg(("human", "q"))]), encoding="utf-8")
    assert "record 1 does not end with an assistant turn" in error(path)


def test_csv_is_refused_naming_the_supported_formats(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("instruction,output\nq,a\n", encoding="utf-8")
    message = error(path)
    assert "CSV is not a supported dataset format" in message
    for fmt in ("alpaca", "sharegpt", "messages", "JSON lines"):
        assert fmt in message


def test_csv_under_another_name_says_what_is_expected(tmp_path):
    message = error(_write(tmp_path / "d.data", "instruction,output\nq,a\n"))
    assert "malformed JSON on line 1" in message and "sharegpt" in message


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_eval_file_in_another_format_is_mixed(tmp_path):
    train = jsonl(tmp_path / "train.jsonl", [SG, sg(("human", "q2"), ("gpt", "a2"))])
    held = jsonl(tmp_path / "eval.jsonl", [ALPACA])
    dataset = {"name": "d", "path": None, "train_file": str(train), "eval_file": str(held), "hub_id": None,
               "num_eval": 1, "num_train": None, "format": "auto", "loss_on": "all_assistant"}
    with pytest.raises(ConfigError, match=r"eval.jsonl: record 0 \(line 1\) is an alpaca record but the train set"):
        prepare(_Config(dataset))


# ---- the same errors through the real CLI: one line, exit 2, nothing written ----------------------------
@pytest.mark.parametrize("rows,culprit", [
    ([ALPACA, {"instruction": "q", "output": 42}], ("record 1 (line 2)", "'output' is a number")),
    ([SG, sg(("human", "q"), ("observation", "x"))], ("record 1 (line 2)", "unknown role 'observation'")),
    ([MSG, msg(("user", "q"))], ("record 1 (line 2)", "does not end with an assistant turn")),
    ([SG, ALPACA], ("record 1 (line 2)", "mixed formats")),
])
def test_cli_refuses_bad_records(tmp_path, rows, culprit):
    path = jsonl(tmp_path / "d.jsonl", rows)
    refused(tmp_path, *FAST, f"dataset.path={path}", culprit=(str(path), *culprit))


def test_cli_refuses_csv(tmp_path):
    path = _write(tmp_path / "d.csv", "instruction,output\nq,a\n")
    refused(tmp_path, *FAST, f"dataset.path={path}", culprit=(str(path), "CSV", "sharegpt", "messages"))


@pytest.mark.parametrize("override,culprit", [("dataset.format=csv", "dataset.format"),
                                              ("dataset.loss_on=everything", "dataset.loss_on")])
def test_cli_refuses_unknown_format_and_loss_on(tmp_path, override, culprit):
    refused(tmp_path, *FAST, override, culprit=culprit)


# ---- dataset.hub_id through datasets.load_dataset (offline mirror) --------------------------------------
def _mirror(tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    folder = root / "datasets" / "someorg" / "chats"
    folder.mkdir(parents=True)
    train = [sg(("human", f"问题{i}"), ("gpt", f"回答{i}。"), ("human", "还有呢？"), ("gpt", f"补充{i}。"))
             for i in range(12)]
    jsonl(folder / "train.jsonl", train)
    jsonl(folder / "test.jsonl", [sg(("human", f"测试{i}"), ("gpt", f"答{i}。")) for i in range(3)])
    return root


def _hub_env(tmp_path: Path) -> dict[str, str]:
    return {"HARNESS_HUB_MIRROR": str(_mirror(tmp_path)), "HF_DATASETS_CACHE": str(tmp_path / "hf-cache"),
            "HF_HUB_OFFLINE": "1"}


def test_cli_trains_a_hub_dataset_from_the_mirror(tmp_path):
    from tests.cli import harness, results

    run = harness("run", *FAST, "dataset.hub_id=someorg/chats", "dataset.train_file=null", "dataset.eval_file=null",
                  "dataset.eval_split=test", "dataset.num_eval=3", f"results_dir={tmp_path / 'results'}",
                  env=_hub_env(tmp_path), timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "someorg/chats split 'train': detected sharegpt format" in run.stdout
    (record,) = results(tmp_path / "results")
    assert record["status"] == "ok" and record["job"]["dataset"]["format"] == "sharegpt"


@pytest.mark.parametrize("override,culprit", [
    ("dataset.hub_id=someorg/missing", ("dataset.hub_id", "someorg/missing", "not in the offline mirror")),
    ("dataset.split=nosuchsplit", ("dataset.hub_id", "someorg/chats", "'nosuchsplit'")),
])
def test_cli_refuses_a_bad_hub_dataset(tmp_path, override, culprit):
    args = [a for a in ("dataset.hub_id=someorg/chats", "dataset.train_file=null", "dataset.eval_file=null")
            if a.split("=")[0] != override.split("=")[0]] + [override]  # a key given twice is refused on its own
    results_dir = tmp_path / "results"
    from tests.cli import harness

    run = harness("run", *FAST, *args, f"results_dir={results_dir}", env=_hub_env(tmp_path), timeout=300)
    line = run.stderr.strip()
    assert run.returncode == 2 and "\n" not in line and line.startswith("error:"), run.stderr
    for part in culprit:
        assert part in line, line
    assert not results_dir.exists()


def test_new_dataset_fields_leave_alpaca_job_hashes_unchanged():
    """Results and baselines recorded before the formats existed keep matching the same jobs."""
    from harness.config.job import job_hash, point_hash
    from tests.helpers.jobs import make_job

    job = make_job()
    job["dataset"]["format"] = "alpaca"  # as harness.launch.repeats resolves dataset.format=auto
    earlier = json.loads(json.dumps(job))
    for key in ("config", "split", "eval_split", "format", "loss_on"):
        earlier["dataset"].pop(key)
    assert job_hash(job) == job_hash(earlier) and point_hash(job) == point_hash(earlier)
    conversations = json.loads(json.dumps(job))
    conversations["dataset"]["format"] = "sharegpt"
    last = json.loads(json.dumps(conversations))
    last["dataset"]["loss_on"] = "last_assistant"
    assert len({point_hash(job), point_hash(conversations), point_hash(last)}) == 3
