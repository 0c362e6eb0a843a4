"""The float64 numpy reference reproduces the shared golden logits.

The golden logits come from a separate float64 implementation kept outside this repository, so
agreement here shows the in-repo reference is right before forward_parity_test uses it as the
oracle for m2fp4.
"""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import minimax_m2_reference as ref  # noqa: E402

SHARED_DIR = os.environ.get("M2FP4_SHARED_DIR", "/work/shared")


def read_golden(folder: str):
    with open(os.path.join(folder, "tokens.txt")) as f:
        tokens = [int(t) for t in f.read().replace("\n", "").split(",") if t.strip()]
    config, weights = ref.load_checkpoint(folder)
    logits = np.fromfile(os.path.join(folder, "logits.f32"), dtype="<f4").astype(np.float64)
    return tokens, config, weights, logits.reshape(len(tokens), int(config["vocab_size"]))


@pytest.mark.parametrize("name", ["tiny-bf16", "tiny-fp8"])
def test_reference_matches_golden_logits(name):
    folder = os.path.join(SHARED_DIR, "golden", name)
    tokens, config, weights, golden = read_golden(folder)
    ours = ref.forward_logits(config, weights, tokens)
    rel = np.linalg.norm(ours - golden) / np.linalg.norm(golden)
    print(f"{name}: relative error {rel:.3e} over {golden.shape}")
    assert rel < 1e-6
    np.testing.assert_array_equal(ours.argmax(axis=-1), golden.argmax(axis=-1))


def test_fp8_golden_really_is_fp8_with_f32_block_scales():
    # Guards the FP8 path of the test above: the golden checkpoint must exercise the decoder.
    import safetensors

    with open(os.path.join(SHARED_DIR, "golden", "tiny-fp8", "model.safetensors"), "rb") as f:
        entries = dict(safetensors.deserialize(f.read()))
    q = entries["model.layers.0.self_attn.q_proj.weight"]
    s = entries["model.layers.0.self_attn.q_proj.weight_scale_inv"]
    assert q["dtype"] == "F8_E4M3" and s["dtype"] == "F32"


@pytest.mark.parametrize(
    "mistake",
    ["qk_norm_per_head", "rope_interleaved", "scale_from_rotary_dim", "gqa_modulo", "bias_in_weights", "w1_w3_swapped"],
)
def test_golden_rejects_known_mistakes(mistake, monkeypatch):
    """Sanity of the comparison itself: each classic implementation error (spec section 7)
    moves the logits far outside the tolerance, so the 1e-6 check above is meaningful."""
    folder = os.path.join(SHARED_DIR, "golden", "tiny-bf16")
    tokens, config, weights, golden = read_golden(folder)
    config = dict(config)
    if mistake == "qk_norm_per_head":
        original = ref.rms_norm
        head_dim = int(config["head_dim"])

        def per_head_norm(x, weight, eps):
            if x.shape[-1] == weight.shape[-1] and x.shape[-1] != int(config["hidden_size"]):
                shaped = x.reshape(x.shape[0], -1, head_dim)
                normed = shaped / np.sqrt(np.mean(shaped * shaped, axis=-1, keepdims=True) + eps)
                return normed.reshape(x.shape) * weight
            return original(x, weight, eps)

        monkeypatch.setattr(ref, "rms_norm", per_head_norm)
    elif mistake == "rope_interleaved":

        def interleaved(x, positions, rotary_dim, theta):
            perm = np.arange(x.shape[-1])
            half = rotary_dim // 2
            perm[:rotary_dim:2], perm[1:rotary_dim:2] = np.arange(half), np.arange(half, rotary_dim)
            inverse = np.argsort(perm)
            return original_rope(x[..., inverse], positions, rotary_dim, theta)[..., perm]

        original_rope = ref.rope_rotate_half
        monkeypatch.setattr(ref, "rope_rotate_half", interleaved)
    elif mistake == "scale_from_rotary_dim":
        original_sqrt = ref.math.sqrt
        monkeypatch.setattr(ref.math, "sqrt", lambda v: original_sqrt(config["rotary_dim"]))
    elif mistake == "gqa_modulo":
        # h // group replaced by h % n_kv: swap KV heads for the odd/even query heads.
        n_heads, n_kv, hd = config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]
        group = n_heads // n_kv
        position = [(h % n_kv) * group + h // n_kv for h in range(n_heads)]
        order = np.argsort(position)  # head now at position p is the original head order[p]
        for layer in range(config["num_hidden_layers"]):
            for suffix in ("q_proj.weight", "q_norm.weight"):
                name = f"model.layers.{layer}.self_attn.{suffix}"
                w = weights[name]
                w = w.reshape(n_heads, hd, *w.shape[1:])[order].reshape(w.shape)
                weights = dict(weights, **{name: w})
            name = f"model.layers.{layer}.self_attn.o_proj.weight"
            w = weights[name]
            w = w.reshape(w.shape[0], n_heads, hd)[:, order, :].reshape(w.shape)
            weights = dict(weights, **{name: w})
    elif mistake == "bias_in_weights":
        original_route = ref.route

        def biased(h, weights_, prefix, config_):
            chosen, _ = original_route(h, weights_, prefix, config_)
            scores = 1.0 / (1.0 + np.exp(-(h @ weights_[prefix + "gate.weight"].T)))
            picked = np.take_along_axis(scores + weights_[prefix + "e_score_correction_bias"], chosen, -1)
            return chosen, picked / picked.sum(-1, keepdims=True)

        monkeypatch.setattr(ref, "route", biased)
    elif mistake == "w1_w3_swapped":
        weights = dict(weights)
        for name in [n for n in weights if n.endswith(".w1.weight")]:
            other = name.replace(".w1.", ".w3.")
            weights[name], weights[other] = weights[other], weights[name]
    wrong = ref.forward_logits(config, weights, tokens)
    rel = np.linalg.norm(wrong - golden) / np.linalg.norm(golden)
    print(f"{mistake}: {rel:.3e}")
    assert rel > 1e-2, f"{mistake} changed the logits only by {rel:.3e}"
