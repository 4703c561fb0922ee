"""benchmarks/reattribute_time.py on a committed H200 time profile: the fields it adds come back equal to a
fresh attribution of the kept trace, the recorded parts are checked first, and a current file is left alone."""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from benchmarks.reattribute_time import NEW_FIELDS, NOTE, reattribute
from harness.results.time_attribution import attribute_steps

RUN = Path(__file__).resolve().parents[2] / ("results/h200/session7/throughput_7b/qwen2.5-7b-medical-4ddff7cf611c/"
                                             "unsloth-2026.10.9-9f2da4433eea/r0")


@pytest.fixture
def older_result(tmp_path):
    if not RUN.exists():
        pytest.skip("the committed session-7 profile is not in this checkout")
    run = tmp_path / "r0"
    shutil.copytree(RUN, run, ignore=shutil.ignore_patterns("memory_snapshot.pickle", "worker.log"))
    data = json.loads((run / "result.json").read_text())
    recorded = {k: data["profile"]["time"].pop(k) for k in NEW_FIELDS if k in data["profile"]["time"]}
    data["profile"]["time"]["notes"] = [n for n in data["profile"]["time"]["notes"] if "reattribute_time" not in n]
    (run / "result.json").write_text(json.dumps(data))
    return run, recorded


def test_the_missing_fields_are_rederived_from_the_kept_trace(older_result):
    run, recorded = older_result
    assert reattribute(run / "result.json") == "updated"
    time = json.loads((run / "result.json").read_text())["profile"]["time"]
    # against a fresh attribution of the same trace, not the committed figures: those are what the code gave
    # when they were written (gpu_idle's kernel classes have been corrected since)
    fresh = attribute_steps(json.loads(gzip.decompress((run / time["trace_file"]).read_bytes())))
    assert {k: time[k] for k in ("kernel_classes_s", "idle", "sdpa_ops")} == \
        {k: fresh[k] for k in ("kernel_classes_s", "idle", "sdpa_ops")}
    # session 7's unsloth ran SDPA on cuDNN attention (docs/explain.md section 5)
    assert {o["name"] for o in time["sdpa_ops"]} >= {"aten::_scaled_dot_product_cudnn_attention"}
    assert time["idle"] == recorded["idle"] and set(time["kernel_classes_s"]) == set(recorded["kernel_classes_s"])
    # unsloth's fused loss: no LM-head mark, so the loss is not separable from the forward (recorded as 0.0 before)
    assert time["not_separated"] == {"loss": "forward"} and time["parts_s"]["loss"] == 0.0
    assert time["notes"][-1] == NOTE
    assert reattribute(run / "result.json") == "current"


def test_parts_that_disagree_with_the_trace_leave_the_file_as_it_was(older_result):
    run, _ = older_result
    data = json.loads((run / "result.json").read_text())
    data["profile"]["time"]["parts_s"]["forward"] += 0.1
    (run / "result.json").write_text(json.dumps(data))
    before = (run / "result.json").read_bytes()
    with pytest.raises(ValueError, match="differ from the recorded"):
        reattribute(run / "result.json")
    assert (run / "result.json").read_bytes() == before
