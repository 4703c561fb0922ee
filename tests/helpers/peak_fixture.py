"""A small fixture cut from a real allocator snapshot (``memory_snapshot.pickle``, 4 MB): the peak step's events
up to the head input's gradient, and the allocator's state there, with frames cut to the few that name who
allocated. What tests/measure/test_model_marks.py re-attributes, committed instead of the pickle:

    python -m tests.helpers.peak_fixture SNAPSHOT.pickle RESULT.json OUT.json.gz HIDDEN_SIZE

The cut keeps what the attribution reads (harness/results/memory_attribution.py): the replay undoes the kept
events from the state at the cut, as it undoes a ring buffer's from the snapshot's state, so the peak and
every allocation live at it are those of the whole snapshot. Pure Python: the pickle holds dicts and lists
(torch.cuda.memory._snapshot), no torch needed to read it.
"""
from __future__ import annotations

import gzip
import json
import pickle
import sys
from pathlib import Path
from typing import Any

from harness.results.memory_attribution import _Replay, _marker

FRAMES_KEPT = 3


def _frames(frames: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Our markers' frames and the innermost frames outside torch, file names cut to their base name."""
    out = []
    for frame in frames or ():
        name, filename = str(frame.get("name") or ""), str(frame.get("filename") or "")
        if name.startswith("_harness_mark_") or ("/torch/" not in filename and not filename.startswith("??")):
            out.append({"filename": filename.rsplit("/", 1)[-1], "line": frame.get("line"), "name": name})
        if len(out) >= FRAMES_KEPT:
            break
    return out


def cut(snapshot: dict[str, Any], *, head_input_bytes: int, device: int = 0) -> dict[str, Any]:
    """The peak step's events, from its step_begin marker to the first allocation after the peak of
    ``head_input_bytes`` (the gradient of the LM head's input: where a head_grad mark fires), and the
    allocator's state after that event as the snapshot's segments."""
    replay = _Replay(snapshot, device)
    if replay.inconsistent:
        raise ValueError(f"{replay.inconsistent} events do not match the snapshot's blocks")
    _, at, _ = replay.walk(())
    events = replay.events
    begin = max(i for i, e in enumerate(events[: at + 1]) if e["action"] == "alloc" and _marker(e) == "step_begin")
    end = next(i for i in range(at + 1, len(events))
               if events[i]["action"] == "alloc" and int(events[i]["size"]) == head_input_bytes)
    _, _, states = replay.walk([end])
    blocks = [{"address": a.addr, "size": a.size, "state": "active_allocated", "frames": _frames(a.frames)}
              for a in sorted(states[end].values(), key=lambda a: a.addr)]
    kept = [{"action": e["action"], "addr": int(e["addr"]), "size": int(e["size"]), "frames": _frames(e.get("frames"))}
            for e in events[begin:end + 1]]
    return {"segments": [{"device": device, "address": b["address"], "blocks": [b]} for b in blocks],
            "device_traces": [kept] if device == 0 else [[]] * device + [kept]}


def build(snapshot_path: Path, result_path: Path, hidden_size: int) -> dict[str, Any]:
    """The fixture of one profiled run: its snapshot cut, and what its result recorded from the whole one."""
    result = json.loads(result_path.read_text(encoding="utf-8"))
    memory = result["profile"]["memory"]
    # the head's input: one bf16 hidden state per row of the logits' fp32 upcast, the peak's biggest tensor
    # (16 x 1024 x vocab: the peak step's padded length), whose vocabulary the recorded loss path names
    vocab = result["profile"]["loss_path"]["logits_shape"][-1]
    rows = max(a["bytes"] for a in memory["top_allocations"]) // (4 * vocab)
    source = str(snapshot_path)
    return {"source": source[source.find("results/"):] if "results/" in source else source,
            "hidden_size": hidden_size, "vocab": vocab, "rows": rows,
            "recorded": {k: memory[k] for k in ("categories", "detail", "peak_allocated_bytes", "peak_phase", "notes")},
            "snapshot": cut(pickle.loads(snapshot_path.read_bytes()), head_input_bytes=rows * hidden_size * 2)}


def main(argv: list[str]) -> int:
    snapshot_path, result_path, out, hidden_size = Path(argv[0]), Path(argv[1]), Path(argv[2]), int(argv[3])
    fixture = build(snapshot_path, result_path, hidden_size)
    out.write_bytes(gzip.compress(json.dumps(fixture, separators=(",", ":")).encode(), compresslevel=9, mtime=0))
    print(f"{out}: {out.stat().st_size} bytes, {len(fixture['snapshot']['device_traces'][0])} events")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
