"""Where the LM head's mark fires (harness/worker/model_marks.py), on CPU, in a tiny model run three ways:

- ``module``: transformers' models (trl, LLaMA-Factory): the final norm module, then the lm_head module;
- ``function``: unsloth's fast forward building the logits (as our common loss makes it): the norm applied by
  a function given the module (``fast_rms_layernorm(self.norm, X)``), never called; the lm_head module called;
- ``fused``: unsloth's forward given labels: the loss computed from ``lm_head.weight`` in chunks, no module.

Memory: every fresh op output is logged as an allocation, in order, with the Python stack that asked for it
(a TorchDispatchMode), our marks between them; that log as an allocator snapshot goes through the real
attribution. Time: the real TimeProfiler over torch.profiler. And the real unsloth snapshot of session 7
(its same-loss 7B run), cut to its peak step (tests/helpers/peak_fixture.py), re-attributed with the head
mark where the LM head's pre-hook fires.
"""
from __future__ import annotations

import gzip
import json
import traceback
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function
from torch.utils._python_dispatch import TorchDispatchMode

from harness.results.memory_attribution import MARK_PREFIX, Pointers, attribute_peak
from harness.results.time_attribution import MARK
from harness.worker.model_marks import HEAD_INPUT, NORM_OUTPUT, NOT_MARKED, ModelMarks
from harness.worker.time_profiler import TimeProfiler

V, H, B, T = 4096, 8, 2, 8  # a vocabulary far wider than the hidden size: the logits are the big tensors
LOGITS_BYTES = B * T * V * 4
CHUNK = 4  # rows per chunk of the fused loss (its chunks' logits: 64 KiB, no other tensor's size)
FIXTURE = Path(__file__).parent / "data" / "unsloth_same_loss_peak.json.gz"
REPO_ROOT = Path(__file__).resolve().parents[2]
QWEN_7B_HIDDEN = 3584


def rms_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A function given the norm module, as unsloth's fast_rms_layernorm(self.norm, X)."""
    with record_function("test::norm"):
        return norm.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


class Norm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(H))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(self, x)


class Decoder(nn.Module):
    def __init__(self, call_norm: bool) -> None:
        super().__init__()
        self.embed_tokens, self.norm, self.call_norm = nn.Embedding(V, H), Norm(), call_norm
        self.layers = nn.ModuleList(nn.Linear(H, H) for _ in range(2))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed_tokens(ids)
        for layer in self.layers:
            h = h + torch.tanh(layer(h))
        return self.norm(h) if self.call_norm else rms_norm(self.norm, h)


class TinyLM(nn.Module):
    def __init__(self, style: str) -> None:
        super().__init__()
        self.style, self.model, self.lm_head = style, Decoder(call_norm=style == "module"), nn.Linear(H, V, bias=False)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.model(input_ids)
        if self.style == "fused":  # chunks of logits from the weight itself: no module to hook
            with record_function("test::fused_ce"):
                rows, targets = h.flatten(0, 1).split(CHUNK), labels.flatten().split(CHUNK)
                return sum(F.cross_entropy(r @ self.lm_head.weight.t(), t, reduction="sum")
                           for r, t in zip(rows, targets)) / labels.numel()
        with record_function("test::lm_head"):
            logits = self.lm_head(h)
        with record_function("test::loss"):
            return F.cross_entropy(logits.flatten(0, 1), labels.flatten())


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, V, (B, T), generator=g), torch.randint(0, V, (B, T), generator=g)


class Allocations(TorchDispatchMode):
    """Every op's fresh output (no view, no in-place result) as an allocation, in order, with its stack
    (innermost first, as the allocator records it); marks in between."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        stack = [{"filename": f.filename, "line": f.lineno, "name": f.name} for f in traceback.extract_stack()[:-1]]
        for ret, t in zip(func._schema.returns, out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor) and ret.alias_info is None:
                self.events.append(("alloc", t.nbytes, tuple(t.shape), stack[::-1]))
        return out

    def mark(self, kind: str) -> None:
        self.events.append(("mark", kind))

    def snapshot(self, model: nn.Module) -> tuple[dict, Pointers]:
        """The log as torch.cuda.memory._snapshot writes one (nothing freed: every allocation is live at the
        end); the parameters and their gradients were there before the history, as the weights are."""
        trace, live, addr = [], [], 1 << 50
        for e in self.events:
            if e[0] == "mark":
                frames = [{"filename": "memory_profiler.py", "line": 0, "name": MARK_PREFIX + e[1]}]
                trace += [{"action": "alloc", "addr": 1 << 60, "size": 512, "frames": frames},
                          {"action": "free_completed", "addr": 1 << 60, "size": 512, "frames": frames}]
                continue
            trace.append({"action": "alloc", "addr": addr, "size": e[1], "frames": e[3]})
            live.append((addr, e[1]))
            addr += e[1] + 4096
        params = [p for p in model.parameters()]
        blocks = live + [(p.data_ptr(), p.nbytes) for p in params]
        segments = [{"device": 0, "address": a, "blocks": [{"address": a, "size": s, "state": "active_allocated"}]}
                    for a, s in blocks]
        return {"segments": segments, "device_traces": [trace]}, Pointers(trainable=[p.data_ptr() for p in params])


def _logged_step(style: str) -> tuple[Allocations, ModelMarks, nn.Module]:
    model, log = TinyLM(style).train(), Allocations()
    ids, labels = _batch()
    marks = ModelMarks(model, log.mark)
    log.mark("step_begin")
    with log:
        model(ids, labels).backward()
    log.mark("pre_optimizer")
    marks.remove()
    return log, marks, model


@pytest.mark.parametrize("style,site", [("module", NORM_OUTPUT), ("function", HEAD_INPUT)])
def test_the_head_mark_fires_where_the_model_enters_its_head(style, site):
    log, marks, _ = _logged_step(style)
    seq = [e[1] if e[0] == "mark" else ("logits-wide" if e[2][-1:] == (V,) else "op") for e in log.events]
    assert seq.count("head") == 1 and seq.count("head_grad") == 1  # both sites hooked: the first one wins
    assert marks.heads == {site: 1} and marks.head_mark == site and marks.note() is None
    head, grad = seq.index("head"), seq.index("head_grad")
    # the norm's ops all come before the head; every logits-wide tensor (logits, their softmax, their
    # gradient) lies between the head and its input's gradient
    norm_ops = [i for i, e in enumerate(log.events) if e[0] == "alloc" and any(f["name"] == "rms_norm" for f in e[3])]
    assert norm_ops and max(norm_ops) < head
    wide = [i for i, s in enumerate(seq) if s == "logits-wide"]
    assert wide and head < min(wide) and max(wide) < grad


@pytest.mark.parametrize("style", ["module", "function"])
def test_the_logits_are_attributed_to_logits_and_loss(style):
    log, _, model = _logged_step(style)
    out = attribute_peak(*log.snapshot(model))
    assert out["not_separated"] is None and not out["notes"]
    top = out["top_allocations"]
    logits = [a for a in top if a["bytes"] == LOGITS_BYTES]
    assert logits and all(a["part"] == "logits_loss" for a in logits), top
    assert any(a["where"].startswith("test_model_marks.py:") and a["where"].endswith(" forward") for a in logits)
    assert out["categories"]["logits_loss"] >= 2 * LOGITS_BYTES  # the logits and their gradient at least
    assert out["detail"]["activations_forward"] > 0 and out["peak_allocated_bytes"] == sum(out["categories"].values())


def test_a_fused_loss_that_calls_no_module_is_said_not_separable():
    log, marks, model = _logged_step("fused")
    assert marks.forwards == 1 and marks.heads == {} and marks.head_mark == NOT_MARKED
    assert "not separable" in marks.note() and "hooked: final norm output and LM head input" in marks.note()
    out = attribute_peak(*log.snapshot(model))
    assert out["categories"]["logits_loss"] is None and out["not_separated"] == {"logits_loss": "activations"}
    assert any("not separable" in n for n in out["notes"])
    # the chunks' logits, softmax and their gradients: all of them counted in activations
    wide = sum(e[1] for e in log.events if e[0] == "alloc" and e[2][-1:] == (V,) and e[2] != (V, H))
    assert wide >= 2 * (B * T // CHUNK) * CHUNK * V * 4 and out["categories"]["activations"] >= wide
    assert out["peak_allocated_bytes"] == sum(v for v in out["categories"].values() if v is not None)


def _profiled(style: str, run_dir: Path, steps: int = 2):
    model = TinyLM(style).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    prof = TimeProfiler({"steps": steps}, run_dir, warmup_steps=0, max_steps=steps)
    prof.on_train_begin(None, None, None, model=model)
    ids, labels = _batch()
    for step in range(1, steps + 1):
        model(ids, labels).backward()
        prof.on_pre_optimizer_step(None, None, None)
        opt.step()
        opt.zero_grad()
        prof.on_step_end(None, SimpleNamespace(global_step=step), None)
    record = prof.finish([])
    assert record.status == "ok", record.reason
    trace = json.loads(gzip.decompress((run_dir / record.trace_file).read_bytes()))["traceEvents"]
    spans = {}
    for e in trace:
        if e.get("ph") == "X" and str(e.get("name", "")).startswith(("test::", MARK, "aten::linear")):
            spans.setdefault(e["name"], []).append((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0))))
    return record, {k: sorted(v) for k, v in spans.items()}


@pytest.mark.parametrize("style,site", [("module", NORM_OUTPUT), ("function", HEAD_INPUT)])
def test_the_time_of_the_head_and_loss_is_the_loss_part(style, site, tmp_path):
    record, spans = _profiled(style, tmp_path)
    assert record.head_mark == site and record.not_separated is None
    heads = [a for a, _ in spans[MARK + "head"]]
    assert len(heads) == len(spans[MARK + "forward"]) == 2
    inside = 0.0
    for head, (_, norm_end), (lm0, lm1), (loss0, loss1) in zip(heads, spans["test::norm"], spans["test::lm_head"],
                                                                spans["test::loss"]):
        # after the norm, before the head's matmul (the pre-hook runs inside the module call, before its op)
        (matmul,) = [a for a, _ in spans["aten::linear"] if lm0 <= a <= lm1]
        assert norm_end <= head <= matmul
        inside += (lm1 - max(lm0, head)) + (loss1 - loss0)
    # the head's call from its mark on, and the loss, are recorded ranges inside the loss part (host view:
    # the time some recorded op ran in it)
    assert inside > 0 and record.parts_s["loss"] >= inside / 1e6 - 1e-5


def test_a_fused_loss_has_no_loss_part_and_its_time_is_in_forward(tmp_path):
    record, spans = _profiled("fused", tmp_path)
    assert record.head_mark == NOT_MARKED and record.not_separated == {"loss": "forward"}
    assert record.parts_s["loss"] is None and record.host_parts_s["loss"] is None
    fused = sum(b - a for a, b in spans["test::fused_ce"]) / 1e6
    assert record.parts_s["forward"] >= fused - 1e-5
    assert sum(v for v in record.parts_s.values() if v is not None) == pytest.approx(record.window_s, abs=1e-5)
    assert any("not separable" in n for n in record.notes)


def _with_marks(events: list[dict], marks: dict[int, str]) -> list[dict]:
    """``events`` with a marker (the memory profiler's 512-byte allocation) before each index of ``marks``
    (``len(events)``: after the last)."""
    out = []
    for i, e in enumerate(events + [None]):
        if i in marks:
            frames = [{"filename": "memory_profiler.py", "line": 0, "name": MARK_PREFIX + marks[i]}]
            out += [{"action": a, "addr": 1 << 60, "size": 512, "frames": frames} for a in ("alloc", "free_completed")]
        if e is not None:
            out.append(e)
    return out


def test_the_real_unsloth_peak_re_attributed_with_the_head_mark_at_the_lm_head_input():
    """Session 7's unsloth run under the common loss (results/h200/session7/throughput_7b, Qwen2.5-7B, 16 x 1024
    rows at the peak): recorded without a head mark, its three 9.97 GB fp32 logits tensors were 'activations'.
    Its peak step again, with the mark where the LM head's pre-hook fires (before the allocation the
    ``self.lm_head(...)`` call makes, unsloth/models/llama.py:2152) and the head_grad mark after its input's
    gradient: the logits and loss are what trl's same-loss run has (29,896,998,928 bytes, its result.json)."""
    fixture = json.loads(gzip.decompress(FIXTURE.read_bytes()))
    snapshot, recorded = fixture["snapshot"], fixture["recorded"]
    events = snapshot["device_traces"][0]
    # as recorded: the same peak, activations and (without the live pointers) the rest in 'other'
    out = attribute_peak(snapshot, Pointers())
    assert out["peak_allocated_bytes"] == recorded["peak_allocated_bytes"] == 49104892732
    assert out["categories"]["activations"] == recorded["categories"]["activations"]
    assert out["categories"]["other"] == sum(recorded["categories"][k] for k in ("frozen_weights", "trainable_state",
                                                                                 "other"))
    assert out["categories"]["logits_loss"] is None and out["not_separated"] == {"logits_loss": "activations"}

    head = next(i for i, e in enumerate(events) if e["action"] == "alloc"
                and (e["frames"][:1] or [{}])[0].get("name") == "_CausalLM_fast_forward"
                and e["frames"][0]["line"] == 2152)
    marked = dict(snapshot, device_traces=[_with_marks(events, {head: "head", len(events): "head_grad"})])
    out = attribute_peak(marked, Pointers())
    logits = fixture["rows"] * fixture["vocab"] * 4
    assert out["categories"]["logits_loss"] == 29896998928 and out["not_separated"] is None
    assert [a["part"] for a in out["top_allocations"] if a["bytes"] == logits] == ["logits_loss"] * 3
    assert out["categories"]["activations"] == recorded["categories"]["activations"] - 29896998928
    assert out["peak_phase"] == "loss" and out["peak_allocated_bytes"] == recorded["peak_allocated_bytes"]


def test_the_fixture_is_what_the_committed_snapshot_cuts_to():
    from tests.helpers.peak_fixture import build

    fixture = json.loads(gzip.decompress(FIXTURE.read_bytes()))
    run = (REPO_ROOT / fixture["source"]).parent
    if not (run / "memory_snapshot.pickle").is_file():  # kept in the history only (results/h200/session7/README.md)
        pytest.skip(f"{run / 'memory_snapshot.pickle'} is not in this checkout")
    rebuilt = build(run / "memory_snapshot.pickle", run / "result.json", QWEN_7B_HIDDEN)
    assert json.loads(json.dumps(rebuilt)) == fixture
