"""The allocator peak's attribution over hand-built snapshots whose answers are known by construction."""
from __future__ import annotations

import pytest

from harness.results.memory_attribution import Pointers, attribute_peak, with_nvml

MiB = 2**20


class Trace:
    """A snapshot built the way the allocator writes one: alloc/free events, then the final segments."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.live: dict[int, tuple[int, list]] = {}
        self.next_addr = 1 << 30

    def alloc(self, size: int, where: str = "f", addr: int | None = None) -> int:
        addr = addr if addr is not None else self.next_addr
        self.next_addr = max(self.next_addr, addr + size + 4096)
        frames = [{"filename": "/x/model.py", "line": 1, "name": where}]
        self.events.append({"action": "alloc", "addr": addr, "size": size, "frames": frames})
        self.live[addr] = (size, frames)
        return addr

    def free(self, addr: int) -> None:
        size, frames = self.live.pop(addr)
        self.events.append({"action": "free_requested", "addr": addr, "size": size, "frames": frames})
        self.events.append({"action": "free_completed", "addr": addr, "size": size, "frames": frames})

    def mark(self, kind: str) -> None:
        addr = self.alloc(512, f"_harness_mark_{kind}")
        self.free(addr)

    def snapshot(self, preexisting: dict[int, int] | None = None) -> dict:
        blocks = {**{a: (s, []) for a, s in (preexisting or {}).items()}, **self.live}
        segments = [{"device": 0, "address": a, "total_size": s, "blocks": [
            {"address": a, "size": s, "state": "active_allocated", "frames": f}]} for a, (s, f) in blocks.items()]
        # an inactive block (cached, free): reserved, never allocated
        segments.append({"device": 0, "address": 1 << 40, "total_size": MiB,
                         "blocks": [{"size": MiB, "state": "inactive"}]})
        return {"segments": segments, "device_traces": [self.events]}


def _one_step():
    """Weights loaded before the history (only in the final segments), then a step: forward keeps 30 MiB of
    activations, the head's logits 50 MiB and loss temporaries 20 MiB (10 freed before backward), backward
    allocates gradients 4 MiB and activation grads 6 MiB, frees the activations; optimizer step."""
    t = Trace()
    frozen, lora = 1 << 20, (1 << 20) + 200 * MiB
    opt = t.alloc(8 * MiB, "adam_state")  # optimizer state, allocated in the history (step 1's)
    t.mark("step_begin")
    t.mark("forward")
    acts = [t.alloc(10 * MiB, "act") for _ in range(3)]
    t.mark("head")
    logits = t.alloc(50 * MiB, "lm_head")
    tmp = t.alloc(10 * MiB, "loss_tmp")
    t.free(tmp)
    kept_tmp = t.alloc(10 * MiB, "loss_tmp2")
    t.mark("head_grad")
    grad = t.alloc(4 * MiB, "accumulate_grad")
    dact = t.alloc(6 * MiB, "act_grad")
    # the peak is here: 8 + 30 + 50 + 10 + 4 + 6 = 108 MiB of history + 200 + 2 of weights
    for a in acts + [logits, kept_tmp, dact]:
        t.free(a)
    t.mark("pre_optimizer")
    upd = t.alloc(1 * MiB, "adam_tmp")
    t.free(upd)
    t.free(grad)  # zero_grad(set_to_none)
    t.mark("step_end")
    snapshot = t.snapshot(preexisting={frozen: 200 * MiB, lora: 2 * MiB})
    pointers = Pointers(frozen=[frozen + 4096], trainable=[lora], optimizer=[opt + 1024], gradients=[grad])
    return snapshot, pointers


def test_a_known_step_is_attributed_exactly():
    snapshot, pointers = _one_step()
    out = attribute_peak(snapshot, pointers, measured_peak=310 * MiB)
    assert out["categories"] == {"frozen_weights": 200 * MiB, "trainable_state": (2 + 8 + 4) * MiB,
                                 "activations": 36 * MiB, "logits_loss": 60 * MiB, "other": 0}
    assert out["detail"]["gradients"] == 4 * MiB and out["detail"]["optimizer_state"] == 8 * MiB
    assert out["detail"]["activations_forward"] == 30 * MiB and out["detail"]["activations_backward"] == 6 * MiB
    assert out["peak_allocated_bytes"] == 310 * MiB == sum(out["categories"].values())
    assert out["coverage"] == 1.0 and out["peak_phase"] == "backward" and not out["notes"]
    assert out["top_allocations"][0] == {"bytes": 200 * MiB, "part": "frozen_weights", "where": "not recorded"}
    assert out["top_allocations"][1]["where"] == "model.py:1 lm_head"


def test_a_reused_address_is_not_taken_for_the_tensor_that_holds_it_later():
    # An activation freed before the optimizer step whose address a gradient then reuses is an activation
    # at the peak: identity is (address, allocating event), not the address alone.
    t = Trace()
    t.mark("step_begin")
    act = t.alloc(10 * MiB, "act")
    t.mark("head")
    t.mark("head_grad")
    t.free(act)
    grad = t.alloc(10 * MiB, "grad", addr=act)
    t.mark("pre_optimizer")
    t.free(grad)
    t.mark("step_end")
    out = attribute_peak(t.snapshot(), Pointers(gradients=[grad]))
    assert out["categories"]["activations"] == 10 * MiB and out["categories"]["trainable_state"] == 0


def test_a_history_that_misses_the_peak_step_start_says_so_and_still_adds_up():
    snapshot, pointers = _one_step()
    events = snapshot["device_traces"][0]
    cut = next(i for i, e in enumerate(events) if e["frames"][0]["name"] == "act")
    snapshot["device_traces"][0] = events[cut:]  # the ring buffer kept only the newest events
    out = attribute_peak(snapshot, pointers, measured_peak=310 * MiB)
    assert out["peak_allocated_bytes"] == 310 * MiB == sum(out["categories"].values())
    assert out["categories"]["other"] > 0 and any("max_entries" in n for n in out["notes"])


def test_the_parent_adds_fragmentation_and_non_pytorch_memory():
    snapshot, pointers = _one_step()
    out = with_nvml(attribute_peak(snapshot, pointers), nvml_peak=400 * MiB, reserved=330 * MiB)
    assert out["categories"]["fragmentation"] == 20 * MiB and out["categories"]["non_pytorch"] == 70 * MiB
    assert sum(out["categories"].values()) == 400 * MiB  # the stack reaches NVML's peak exactly
    assert with_nvml(attribute_peak(snapshot, pointers), nvml_peak=None, reserved=None)["categories"]["non_pytorch"] is None


def test_a_snapshot_without_history_is_refused_by_name():
    with pytest.raises(ValueError, match="no allocation history"):
        attribute_peak({"segments": [], "device_traces": [[]]}, Pointers())


def test_a_peak_step_without_a_head_marker_counts_logits_and_loss_in_activations_and_says_not_separable():
    # unsloth's fused loss calls no module the head mark can hook: the step has no head / head_grad markers
    snapshot, pointers = _one_step()
    events = snapshot["device_traces"][0]
    snapshot["device_traces"][0] = [e for e in events if e["frames"][0]["name"] not in
                                    ("_harness_mark_head", "_harness_mark_head_grad")]
    out = attribute_peak(snapshot, pointers, measured_peak=310 * MiB)
    assert out["categories"]["logits_loss"] is None and out["detail"]["logits_loss"] is None
    assert out["not_separated"] == {"logits_loss": "activations"}
    # 30 MiB of activations, the 60 MiB of logits and loss, and the 6 MiB of activation grads (no head_grad
    # marker: the backward's allocations follow the forward marker)
    assert out["categories"]["activations"] == (30 + 60 + 6) * MiB
    assert out["peak_allocated_bytes"] == 310 * MiB == sum(v for v in out["categories"].values() if v is not None)
    assert any("not separable" in n for n in out["notes"])
