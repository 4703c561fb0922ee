"""What the GPU waited for and what its busy time went to, over hand-built traces whose answers are known by
construction (harness/results/gpu_idle.py), and through attribute_steps on a GPU-shaped trace."""
from __future__ import annotations

import pytest

from harness.results.gpu_idle import NO_OP, explain_device_time, kernel_class
from harness.results.time_attribution import MARK, attribute_steps


def _ev(name: str, ts: float, dur: float, cat: str, tid: int = 1) -> dict:
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "pid": 7, "tid": tid}


def _trace() -> list[dict]:
    """A 10 ms window, GPU idle 2,600 us: four short gaps (100 us each, launch-bound), one long gap of 1,200 us
    inside a 1,500 us cuDNN op on the backward thread (nested in a longer SDPA op: the innermost is named), and
    one long gap of 1,000 us right after a cudaStreamSynchronize with no host op spanning it."""
    k = "kernel"
    return [
        _ev(MARK + "step_end", 0, 0, "user_annotation"), _ev(MARK + "step_end", 10_000, 0, "user_annotation"),
        _ev("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_TNT", 0, 2_000, k),                 # GEMM 2,000
        _ev("void at::native::unrolled_elementwise_kernel<direct_copy_kernel_cuda>", 2_100, 900, k),  # copy 900
        _ev("void at::native::vectorized_elementwise_kernel<8, CUDAFunctor_add<BFloat16>>", 3_100, 900, k),  # 900
        _ev("cudnn_generated_fort_native_sdpa_sm90_flash_fprop", 4_100, 800, k),          # attention 800, gap after
        # 4,900-6,100 idle (1,200 us): cuDNN building a plan on the autograd thread
        _ev("aten::scaled_dot_product_attention", 4_700, 1_800, "cpu_op", tid=2),
        _ev("aten::_cudnn_attention_backward", 4_800, 1_500, "cpu_op", tid=2),
        _ev("triton_poi_fused__scaled_dot_product_cudnn_attention_0", 6_100, 1_000, k),  # fused (Triton) 1,000
        _ev("multi_tensor_apply_kernel<TensorListMetadata<4>, FusedAdamMathFunctor>", 7_200, 800, k),  # optimizer
        # 8,000-9,000 idle (1,000 us), after a sync that returned at 8,050
        _ev("cudaStreamSynchronize", 7_300, 750, "cuda_runtime"),
        _ev("reduce_kernel<512, 1, ReduceOp<float, NormTwoOps>>", 9_000, 1_000, k),      # reductions 1,000
    ]


def test_idle_time_splits_into_launch_gaps_and_named_long_gaps():
    out = explain_device_time(_trace(), 0, 10_000)
    assert out is not None
    idle = out["idle"]
    assert idle["total_s"] == pytest.approx(2_600e-6)
    assert (idle["short_gaps"], idle["short_gaps_s"]) == (4, pytest.approx(400e-6))
    assert (idle["long_gaps"], idle["long_gaps_s"]) == (2, pytest.approx(2_200e-6))
    rows = {r["op"]: r for r in idle["long_gap_ops"]}
    assert rows["aten::_cudnn_attention_backward"] == {"op": "aten::_cudnn_attention_backward", "count": 1,
                                                       "idle_s": pytest.approx(1_200e-6), "after_sync": 0}
    assert rows[NO_OP]["after_sync"] == 1 and rows[NO_OP]["idle_s"] == pytest.approx(1_000e-6)
    assert [r["op"] for r in idle["long_gap_ops"]] == ["aten::_cudnn_attention_backward", NO_OP]


def test_kernel_classes_and_idle_add_up_to_the_window():
    out = explain_device_time(_trace(), 0, 10_000)
    classes = out["kernel_classes_s"]
    assert classes["GEMM"] == pytest.approx(2_000e-6) and classes["copies and casts"] == pytest.approx(900e-6)
    assert classes["elementwise"] == pytest.approx(900e-6) and classes["attention"] == pytest.approx(800e-6)
    assert classes["fused (Triton)"] == pytest.approx(1_000e-6) and classes["optimizer"] == pytest.approx(800e-6)
    assert classes["reductions and norms"] == pytest.approx(1_000e-6)
    assert sum(classes.values()) + out["idle"]["total_s"] == pytest.approx(10_000e-6)


def test_an_instant_two_streams_share_counts_once_and_a_cpu_trace_has_no_device_explanation():
    events = [_ev("gemm_a", 0, 600, "kernel"), _ev("gemm_b", 400, 600, "kernel", tid=9)]
    out = explain_device_time(events, 0, 1_000)
    assert out["kernel_classes_s"]["GEMM"] == pytest.approx(1_000e-6) and out["idle"]["total_s"] == 0
    assert explain_device_time([_ev("aten::mm", 0, 10, "cpu_op")], 0, 10) is None


@pytest.mark.parametrize("name, cls", [
    ("nvjet_sm90_tst_192x192_64x4_1x2_h_bz_coopB_TNN", "GEMM"),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", "GEMM"),
    ("void at::native::vectorized_elementwise_kernel<8, at::native::bfloat16_copy_kernel_cuda(at::TensorIteratorBase&)", "copies and casts"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::silu_kernel>", "elementwise"),
    # session 7's strided elementwise kernels: "nocast" in every name, a copy only where the functor is one
    ("void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_impl_nocast<at::native::BinaryFunctor<"
     "c10::BFloat16, c10::BFloat16, c10::BFloat16, at::native::binary_internal::MulFunctor<float> > >", "elementwise"),
    ("void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_impl_nocast<at::native::"
     "direct_copy_kernel_cuda(at::TensorIteratorBase&)::{lambda()#3}", "copies and casts"),
    ("triton_red_fused__to_copy_add_mean_mul_pow_rsqrt_0", "fused (Triton)"),
    ("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::func_wrapper_t>>", "reductions and norms"),
    ("fmha_cutlassF_bf16_aligned_64x64_rf_sm80", "attention"),
    ("Memcpy DtoH (Device -> Pinned)", "memset and memcpy"),
    ("some_unknown_kernel", "other"),
])
def test_kernel_names_fall_in_their_class(name, cls):
    assert kernel_class(name) == cls


def test_attribute_steps_carries_the_device_explanation_and_a_host_trace_has_none():
    events = _trace() + [_ev(MARK + "forward", 50, 0, "user_annotation")]
    out = attribute_steps({"traceEvents": events})
    assert out["view"] == "device" and out["idle"]["long_gaps"] == 2
    assert sum(out["kernel_classes_s"].values()) + out["idle"]["total_s"] == pytest.approx(out["window_s"])
    host = [e for e in events if e["cat"] not in ("kernel", "cuda_runtime")]
    out = attribute_steps({"traceEvents": host})
    assert out["view"] == "host" and out["idle"] is None and out["kernel_classes_s"] == {}
