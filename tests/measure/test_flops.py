import pytest

from harness.results.flops import flops_per_token, mfu, peak_flops

CFG = {"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
       "num_key_value_heads": 1, "vocab_size": 100, "tie_word_embeddings": True}


def test_hand_computed_full_finetune():
    # head_dim 4; q 8*8=64, k 8*4=32, v 32, o 64 -> attn 192; mlp 3*8*16 = 384; per layer 576
    # N = 2*576 + lm_head 100*8 = 1952; attn fwd = 4 * 2 layers * T=10 * 8 = 640
    out = flops_per_token(CFG, 10, trainable_params=10_000, gradient_checkpointing=False)
    assert out["parts"]["n_matmul"] == 1952
    assert out["parts"]["attention_forward_flops"] == 640
    assert out["parts"]["lora"] is False
    # PaLM: 6N + 12 L H Q T = 6*1952 + 12*2*8*10
    assert out["flops_per_token"] == 6 * 1952 + 12 * 2 * 8 * 10
    assert out["parts"]["recompute_flops"] == 0
    assert "6N+12LHQT" in out["formula"]


def test_hand_computed_lora_with_checkpointing():
    out = flops_per_token(CFG, 10, trainable_params=50, gradient_checkpointing=True)
    n, a = 1952, 640
    assert out["parts"]["lora"] is True
    assert out["flops_per_token"] == (2 * n + 2 * 50 + a) + (2 * n + 2 * 50 + 2 * a) + 2 * 50
    assert out["parts"]["recompute_flops"] == 2 * n + 2 * 50 + a
    assert out["parts"]["hardware_flops_per_token"] == out["flops_per_token"] + 2 * n + 100 + a


def test_peak_and_mfu():
    assert peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA L40S") == 362e12 and peak_flops("NVIDIA L4") == 121e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("Mystery GPU") is None and peak_flops(None, override=1e12) == 1e12
    assert mfu(1000.0, 1e9, 1e13) == pytest.approx(0.1)
    assert mfu(None, 1e9, 1e13) is None and mfu(1.0, 1.0, None) is None
