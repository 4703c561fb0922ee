"""Data preparation: what every framework receives."""
from __future__ import annotations

import json

from harness.data.dataset import load_records


def test_fields_are_stripped_so_every_framework_tokenizes_them_alike(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"instruction": " 头痛 ", "input": "\n", "output": " \n多休息\n"}) + "\n", encoding="utf-8")
    assert load_records(path) == [{"instruction": "头痛", "input": "", "output": "多休息"}]
