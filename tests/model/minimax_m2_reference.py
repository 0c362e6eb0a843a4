"""Independent float64 numpy reference of the MiniMax-M2 forward pass.

Written from /work/shared/specs/minimax-m2-architecture.md only (not from m2fp4's C++ code), so
it can serve as the oracle m2fp4's forward pass is compared against. It loads a Hugging Face
checkpoint folder (config.json plus model.safetensors or shards listed in
model.safetensors.index.json), dequantizes FP8 block-scaled weights exactly, and returns the
logits of every position of one prompt.

Tensors are read with the PyPI `safetensors` package (its format-level `deserialize`, because
numpy has neither bfloat16 nor float8): BF16 is widened from its upper 16 bits, F8_E4M3 goes
through a 256-entry table built from the bit definition in the spec (section 5).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys

import numpy as np
import safetensors

# ----------------------------------------------------------------------------------------------
# Number formats


def bf16_bits_to_f64(bits: np.ndarray) -> np.ndarray:
    """BF16 is the top half of an IEEE float32: shift the 16 stored bits up and reinterpret."""
    widened = bits.astype(np.uint32) << np.uint32(16)
    return widened.view(np.float32).astype(np.float64)


def _e4m3fn_value(code: int) -> float:
    """float8_e4m3fn: 1 sign, 4 exponent bits (bias 7), 3 mantissa bits; no infinities;
    S.1111.111 is NaN; exponent field 0 is subnormal (m/8 * 2^-6)."""
    sign = -1.0 if code & 0x80 else 1.0
    exponent = (code >> 3) & 0xF
    mantissa = code & 0x7
    if exponent == 0xF and mantissa == 0x7:
        return math.nan
    if exponent == 0:
        return sign * (mantissa / 8.0) * 2.0**-6
    return sign * (1.0 + mantissa / 8.0) * 2.0 ** (exponent - 7)


E4M3FN_TABLE = np.array([_e4m3fn_value(c) for c in range(256)], dtype=np.float64)


def fp8_e4m3_codes_to_f64(codes: np.ndarray) -> np.ndarray:
    return E4M3FN_TABLE[codes]


_RAW_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,
    "F8_E4M3": np.uint8,
    "I64": np.int64,
    "I32": np.int32,
}


def decode_tensor(dtype: str, shape, data: bytes) -> np.ndarray:
    """Raw safetensors payload -> float64 array of the given shape."""
    if dtype not in _RAW_DTYPES:
        raise ValueError(f"unsupported safetensors dtype {dtype}")
    raw = np.frombuffer(data, dtype=np.dtype(_RAW_DTYPES[dtype]).newbyteorder("<"))
    raw = raw.reshape(tuple(shape))
    if dtype == "BF16":
        return bf16_bits_to_f64(raw)
    if dtype == "F8_E4M3":
        return fp8_e4m3_codes_to_f64(raw)
    return raw.astype(np.float64)


def dequantize_block_fp8(values: np.ndarray, scale_inv: np.ndarray, block: int = 128) -> np.ndarray:
    """W[i, j] = fp8(W_q[i, j]) * scale_inv[i // block, j // block] (the stored scale is a
    multiplier, DeepSeek-V3 convention). Edge blocks may be partial."""
    rows, cols = values.shape
    want = (-(-rows // block), -(-cols // block))
    if scale_inv.shape != want:
        raise ValueError(f"scale grid {scale_inv.shape} does not match weight {values.shape}")
    expanded = np.repeat(np.repeat(scale_inv, block, axis=0), block, axis=1)[:rows, :cols]
    return values * expanded


# ----------------------------------------------------------------------------------------------
# Checkpoint loading

_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.")


def _checkpoint_files(model_dir: str) -> list[str]:
    index_path = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            weight_map = json.load(f)["weight_map"]
        return sorted(set(weight_map.values()))
    return ["model.safetensors"]


def load_checkpoint(model_dir: str, keep_layers: int | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Returns (config, weights): every tensor the forward pass needs as float64, FP8 weights
    already multiplied by their block scales. Layers >= num_hidden_layers (MTP) are skipped
    (tests may pass keep_layers to load more of them on purpose)."""
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    num_layers = int(config["num_hidden_layers"]) if keep_layers is None else keep_layers
    block = 128
    quant = config.get("quantization_config")
    if quant is not None:
        block_size = quant.get("weight_block_size", [128, 128])
        if block_size[0] != block_size[1]:
            raise ValueError(f"non-square weight_block_size {block_size}")
        block = int(block_size[0])

    raw: dict[str, tuple[str, np.ndarray]] = {}
    for file_name in _checkpoint_files(model_dir):
        with open(os.path.join(model_dir, file_name), "rb") as f:
            entries = safetensors.deserialize(f.read())
        for name, info in entries:
            match = _LAYER_RE.match(name)
            if match and int(match.group(1)) >= num_layers:
                continue  # MTP modules: inference ignores them (spec section 6)
            raw[name] = (info["dtype"], decode_tensor(info["dtype"], info["shape"], info["data"]))

    weights: dict[str, np.ndarray] = {}
    for name, (dtype, value) in raw.items():
        if name.endswith("_scale_inv"):
            continue
        scale_name = name + "_scale_inv"
        if dtype == "F8_E4M3":
            if scale_name not in raw:
                raise ValueError(f"FP8 tensor {name} has no {scale_name}")
            value = dequantize_block_fp8(value, raw[scale_name][1], block)
        weights[name] = value
    return config, weights


# ----------------------------------------------------------------------------------------------
# Forward pass (spec section 2), all float64


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rope_rotate_half(x: np.ndarray, positions: np.ndarray, rotary_dim: int, theta: float) -> np.ndarray:
    """x: [tokens, heads, head_dim]. Rotates channels [0, rotary_dim) of every head, channel i
    paired with i + rotary_dim/2; the rest pass through."""
    half = rotary_dim // 2
    inv_freq = theta ** (-2.0 * np.arange(half, dtype=np.float64) / rotary_dim)
    angles = positions.astype(np.float64)[:, None] * inv_freq[None, :]  # [tokens, half]
    cos = np.cos(angles)[:, None, :]
    sin = np.sin(angles)[:, None, :]
    first = x[..., :half]
    second = x[..., half:rotary_dim]
    out = x.copy()
    out[..., :half] = first * cos - second * sin
    out[..., half:rotary_dim] = second * cos + first * sin
    return out


def attention(h: np.ndarray, weights: dict, prefix: str, config: dict) -> np.ndarray:
    n_tokens = h.shape[0]
    n_heads = int(config["num_attention_heads"])
    n_kv = int(config["num_key_value_heads"])
    head_dim = int(config["head_dim"])
    rotary_dim = int(config.get("rotary_dim", head_dim // 2))
    eps = float(config["rms_norm_eps"])
    theta = float(config["rope_theta"])

    q = h @ weights[prefix + "q_proj.weight"].T  # [T, n_heads*head_dim]
    k = h @ weights[prefix + "k_proj.weight"].T  # [T, n_kv*head_dim]
    v = h @ weights[prefix + "v_proj.weight"].T
    # per_layer QK norm: one statistic over the whole projection, before head split and RoPE.
    q = rms_norm(q, weights[prefix + "q_norm.weight"], eps)
    k = rms_norm(k, weights[prefix + "k_norm.weight"], eps)

    q = q.reshape(n_tokens, n_heads, head_dim)
    k = k.reshape(n_tokens, n_kv, head_dim)
    v = v.reshape(n_tokens, n_kv, head_dim)
    positions = np.arange(n_tokens)
    q = rope_rotate_half(q, positions, rotary_dim, theta)
    k = rope_rotate_half(k, positions, rotary_dim, theta)

    group = n_heads // n_kv
    scale = 1.0 / math.sqrt(head_dim)
    causal = np.tril(np.ones((n_tokens, n_tokens), dtype=bool))
    out = np.empty((n_tokens, n_heads, head_dim), dtype=np.float64)
    for head in range(n_heads):
        kv_head = head // group
        scores = (q[:, head, :] @ k[:, kv_head, :].T) * scale  # [T, T]
        scores = np.where(causal, scores, -np.inf)
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        out[:, head, :] = probs @ v[:, kv_head, :]
    return out.reshape(n_tokens, n_heads * head_dim) @ weights[prefix + "o_proj.weight"].T


def route(h: np.ndarray, weights: dict, prefix: str, config: dict) -> tuple[np.ndarray, np.ndarray]:
    """Returns (expert ids [T, k], mixing weights [T, k]). Sigmoid scores; the correction bias
    only chooses the experts; weights are the unbiased scores renormalised to sum 1."""
    top_k = int(config["num_experts_per_tok"])
    logits = h @ weights[prefix + "gate.weight"].T  # [T, E]
    scores = 1.0 / (1.0 + np.exp(-logits))
    choice = scores
    bias_name = prefix + "e_score_correction_bias"
    if config.get("use_routing_bias", True) and bias_name in weights:
        choice = scores + weights[bias_name][None, :]
    chosen = np.argsort(-choice, axis=-1, kind="stable")[:, :top_k]
    picked = np.take_along_axis(scores, chosen, axis=-1)
    return chosen, picked / picked.sum(axis=-1, keepdims=True)


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def moe(h: np.ndarray, weights: dict, prefix: str, config: dict) -> np.ndarray:
    chosen, mix = route(h, weights, prefix, config)
    out = np.zeros_like(h)
    for expert in np.unique(chosen):
        rows, slots = np.nonzero(chosen == expert)
        e = f"{prefix}experts.{int(expert)}."
        x = h[rows]
        gate = silu(x @ weights[e + "w1.weight"].T)
        up = x @ weights[e + "w3.weight"].T
        y = (gate * up) @ weights[e + "w2.weight"].T
        out[rows] += mix[rows, slots][:, None] * y
    return out


def check_config(config: dict) -> None:
    """Refuses configs that describe a different model than the one this reference computes."""
    if config.get("model_type") != "minimax_m2":
        raise ValueError(f"model_type {config.get('model_type')!r} is not minimax_m2")
    if not config.get("use_qk_norm", True) or config.get("qk_norm_type", "per_layer") != "per_layer":
        raise ValueError("only per_layer QK norm is implemented")
    if config.get("scoring_func", "sigmoid") != "sigmoid":
        raise ValueError("only sigmoid routing is implemented")
    if int(config.get("shared_intermediate_size", 0)) != 0:
        raise ValueError("shared experts are not part of MiniMax-M2")
    if any(int(t) != 1 for t in config.get("attn_type_list", [])):
        raise ValueError("only softmax attention layers (attn_type 1) are implemented")
    if config.get("tie_word_embeddings", False):
        raise ValueError("tied embeddings are not part of MiniMax-M2")
    if int(config["num_attention_heads"]) % int(config["num_key_value_heads"]) != 0:
        raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")


def forward_logits(config: dict, weights: dict, tokens) -> np.ndarray:
    """Logits [n_tokens, vocab] (float64) of every position of one prompt; positions from 0."""
    check_config(config)
    tokens = np.asarray(tokens, dtype=np.int64)
    vocab = int(config["vocab_size"])
    if tokens.ndim != 1 or len(tokens) == 0 or tokens.min() < 0 or tokens.max() >= vocab:
        raise ValueError("tokens must be a non-empty list of ids in [0, vocab_size)")
    eps = float(config["rms_norm_eps"])
    x = weights["model.embed_tokens.weight"][tokens]  # plain gather, no sqrt(H) factor
    for layer in range(int(config["num_hidden_layers"])):
        p = f"model.layers.{layer}."
        h = rms_norm(x, weights[p + "input_layernorm.weight"], eps)
        x = x + attention(h, weights, p + "self_attn.", config)
        h = rms_norm(x, weights[p + "post_attention_layernorm.weight"], eps)
        x = x + moe(h, weights, p + "block_sparse_moe.", config)
    x = rms_norm(x, weights["model.norm.weight"], eps)
    return x @ weights["lm_head.weight"].T


def reference_logits(model_dir: str, tokens) -> np.ndarray:
    config, weights = load_checkpoint(model_dir)
    return forward_logits(config, weights, tokens)


def greedy_continuation(config: dict, weights: dict, prompt, n_new: int) -> list[int]:
    """Argmax chain: each new token is the argmax of the last position's logits."""
    tokens = list(prompt)
    for _ in range(n_new):
        tokens.append(int(np.argmax(forward_logits(config, weights, tokens)[-1])))
    return tokens[len(prompt):]


if __name__ == "__main__":
    # python minimax_m2_reference.py MODEL_DIR 1,2,3 OUT.f32  -> float32 logits [n, vocab]
    model, ids, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
    logits = reference_logits(model, [int(t) for t in ids.split(",")])
    logits.astype("<f4").tofile(out_path)
