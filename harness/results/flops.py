"""Model FLOPs per trained token and MFU, with the arithmetic written down.

MFU (model FLOPs utilisation) compares what a run achieved with what the card could do at best, so a
framework that is "fast" only because it skips work cannot look better than it is: the numerator counts
the FLOPs the *model* needs per token (not the FLOPs a given implementation happens to spend).

Formula (per token, for a decoder-only transformer; PaLM appendix B convention)::

    N        = matmul weights touched per token
             = n_layer * (d*(H*Q) + 2*d*(K*Q) + (H*Q)*d      # q, k, v, o projections
                          + 3*d*d_ff)                        # gated MLP: gate, up, down
               + V*d                                         # lm_head (counted even when tied)
             (input embedding lookups, norms, biases and activations are not matmuls: not counted)
    attn_fwd = 4 * n_layer * T * (H*Q)     # QK^T (2*T*H*Q) and attention x V (2*T*H*Q), no causal halving
    fwd      = 2*N + 2*N_adapter + attn_fwd
    bwd      = 2*N + 2*N_adapter + 2*attn_fwd       # activation gradients, always needed
               + 2*N_grad                           # weight gradients, only of trained weights
    model FLOPs/token = fwd + bwd
    recompute FLOPs/token (gradient checkpointing) = fwd   # reported, never counted in model FLOPs

where d = hidden_size, H = heads, K = key/value heads, Q = head_dim, d_ff = intermediate_size,
V = vocab_size, T = seq_len (tokens in the sequence a token attends over; pass the mean non-padding
sequence length of the data, or max_length for fixed-shape data).

* Full fine-tuning: N_grad = N, N_adapter = 0, giving PaLM's ``6N + 12*L*H*Q*T``.
* LoRA: the frozen base still needs activation gradients (2N) but no weight gradients, so
  N_grad = N_adapter = trainable_params and ``4N + 6*N_lora + 12*L*H*Q*T``: the adapter matmuls
  (x·A·B: 2 FLOPs per adapter parameter forward, 2 for their input gradients, 2 for their weight
  gradients) are counted as real model work.

Note: the brief that started this module wrote the attention term as ``2*n_layer*seq_len*d_model``
(Kaplan et al.'s score-only count); we use PaLM's 4x forward (scores *and* the weighted sum of values)
because it is the one consistent with the ``12*L*H*Q*T`` fwd+bwd figure the MFU literature quotes.
"""
from __future__ import annotations

from typing import Any

FORMULA = ("model_flops/token = fwd + bwd; fwd = 2N + 2N_adapter + 4*L*T*H*Q; "
           "bwd = 2N + 2N_adapter + 8*L*T*H*Q + 2N_grad; N = L*(d*HQ + 2*d*KQ + HQ*d + 3*d*d_ff) + V*d; "
           "full FT: N_grad=N, N_adapter=0 (=6N+12LHQT); LoRA: N_grad=N_adapter=trainable params; "
           "gradient-checkpointing recompute (+fwd) excluded (MFU convention), see parts.recompute_flops")

# Datasheet *dense* (no 2:4 sparsity) BF16 tensor-core peaks, FLOP/s. Matched as a case-insensitive
# substring of the NVML device name, longest key first (so "H100 PCIe" wins over "H100", "L40S" over "L4",
# "H200" over "H20"). Unknown cards give None: pass an explicit override rather than guess.
PEAK_BF16_FLOPS: dict[str, float] = {
    "GH200": 989e12,      # Grace Hopper superchip, H100/H200 SXM-class GPU
    "H200": 989e12,       # H200 SXM datasheet dense BF16
    "H100 NVL": 835e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,       # H100 SXM (NVML: "NVIDIA H100 80GB HBM3")
    "H800": 989e12,
    "H20": 148e12,
    "B200": 2250e12,
    "A100": 312e12,       # SXM and PCIe share the dense BF16 figure
    "A800": 312e12,
    "A30": 165e12,
    "L40S": 362e12,
    "L40": 181e12,
    "L4": 121e12,
    "RTX 4090": 165e12,   # GeForce datasheet, FP32 accumulate dense
}


def _get(cfg: dict[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        value = cfg.get(name)
        if value is not None:
            return value
    return default


def matmul_params(model_config: dict[str, Any]) -> dict[str, int]:
    """Matmul weights per token derived from a HF config dict: per-layer attention / MLP, lm_head, N.

    Nested ``text_config`` (multimodal wrappers) is used when the top level lacks the fields.
    """
    cfg = model_config
    if "hidden_size" not in cfg and isinstance(cfg.get("text_config"), dict):
        cfg = cfg["text_config"]
    d = int(_get(cfg, "hidden_size", "n_embd", "d_model"))
    n_layer = int(_get(cfg, "num_hidden_layers", "n_layer", "num_layers"))
    n_head = int(_get(cfg, "num_attention_heads", "n_head"))
    n_kv = int(_get(cfg, "num_key_value_heads", default=n_head))
    head_dim = int(_get(cfg, "head_dim", default=d // n_head))
    d_ff = int(_get(cfg, "intermediate_size", "n_inner", default=4 * d))
    vocab = int(_get(cfg, "vocab_size"))
    attn = d * n_head * head_dim + 2 * d * n_kv * head_dim + n_head * head_dim * d
    mlp = 3 * d * d_ff
    lm_head = vocab * d
    return {"d_model": d, "n_layer": n_layer, "n_head": n_head, "n_kv_head": n_kv, "head_dim": head_dim,
            "d_attn": n_head * head_dim, "d_ff": d_ff, "vocab_size": vocab,
            "attn_params_per_layer": attn, "mlp_params_per_layer": mlp, "lm_head_params": lm_head,
            "tied_embeddings": bool(cfg.get("tie_word_embeddings", False)),
            "n_matmul": n_layer * (attn + mlp) + lm_head}


def flops_per_token(model_config: dict[str, Any], seq_len: int, *, trainable_params: int,
                    gradient_checkpointing: bool, lora: bool | None = None) -> dict[str, Any]:
    """Training model FLOPs per token (see the module docstring for the formula and why).

    ``lora`` says whether ``trainable_params`` are extra adapter weights (True) or a subset of the base
    weights (False, full fine-tuning); None infers it: adapters when trainable_params < N.
    Returns ``{flops_per_token, formula, parts}``; ``parts`` holds every term, plus
    ``recompute_flops`` (one extra forward when gradient checkpointing is on, else 0) and
    ``hardware_flops_per_token`` = model FLOPs + recompute.
    """
    p = matmul_params(model_config)
    n = p["n_matmul"]
    trainable = int(trainable_params)
    if lora is None:
        lora = trainable < n
    n_adapter = trainable if lora else 0
    n_grad = trainable if lora else min(trainable, n)
    attn_fwd = 4 * p["n_layer"] * int(seq_len) * p["d_attn"]
    fwd = 2 * n + 2 * n_adapter + attn_fwd
    bwd_act = 2 * n + 2 * n_adapter + 2 * attn_fwd
    bwd_weight = 2 * n_grad
    model_flops = fwd + bwd_act + bwd_weight
    recompute = fwd if gradient_checkpointing else 0
    parts = {**p, "seq_len": int(seq_len), "trainable_params": trainable, "lora": bool(lora),
             "n_adapter": n_adapter, "n_grad": n_grad,
             "forward_flops": fwd, "attention_forward_flops": attn_fwd,
             "backward_activation_flops": bwd_act, "backward_weight_flops": bwd_weight,
             "gradient_checkpointing": bool(gradient_checkpointing), "recompute_flops": recompute,
             "hardware_flops_per_token": model_flops + recompute}
    return {"flops_per_token": model_flops, "formula": FORMULA, "parts": parts}


def peak_flops(gpu_name: str | None, override: float | None = None) -> float | None:
    """Dense BF16 peak FLOP/s for a GPU name (datasheet), or ``override`` when given; None if unknown."""
    if override:
        return float(override)
    if not gpu_name:
        return None
    name = gpu_name.lower()
    for key in sorted(PEAK_BF16_FLOPS, key=len, reverse=True):
        if key.lower() in name:
            return PEAK_BF16_FLOPS[key]
    return None


def mfu(tokens_per_s: float | None, flops_per_token: float | None, peak: float | None) -> float | None:
    """Achieved model FLOP/s over peak; None when any input is missing. For several GPUs pass the
    summed tokens/s and ``peak * gpu_count``."""
    if not tokens_per_s or not flops_per_token or not peak:
        return None
    return tokens_per_s * flops_per_token / peak
