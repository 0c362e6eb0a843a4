"""Float64 reference forward pass of QUANTIZED MiniMax-M2 checkpoints.

Written from /work/shared/specs/quant-formats.md (not from m2fp4's C++): every stored 4-bit
weight is dequantized by the spec's formula (NVFP4 §2.1/2.5/2.6, MXFP4 §3.1/3.2, IQ4_NL x16
§3.3/3.4; even column in the low nibble, §2.4), kept tensors are read as stored, and the
forward pass of minimax_m2_reference.py runs on the result. Two optional emulations of what a
quantized runtime does to activations:
  * FP8 KV cache (§4.1): keys after k_norm+RoPE and values are replaced by
    e4m3_satfinite(f32(x / scale)) * scale with the checkpoint's per-layer k/v scales (§4.2
    names, §4.3 fallback).
  * NVFP4 W4A4 (§2.7): the input of each NVFP4 linear that has an input scale is replaced by its
    NVFP4 fake-quantization (per token, per 16 channels), computed in float32 as the formula says.
The attention/MoE code is repeated here (with hooks) because minimax_m2_reference.attention has
none; quantized_forward_test checks that with the hooks off it equals forward_logits exactly.
"""

from __future__ import annotations

import json
import math
import os

import ml_dtypes
import numpy as np
import safetensors

import minimax_m2_reference as mref

F32 = np.float32
E2M1_VALUES = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float64)
IQ4NL_LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                        np.float64)

# ----------------------------------------------------------------------------------------------
# Reading a quantized checkpoint


def read_raw(model_dir: str) -> tuple[dict, dict[str, tuple[str, np.ndarray]]]:
    """(config, name -> (safetensors dtype, array)); U8 stays raw bytes, everything else float64."""
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    raw = {}
    for file_name in mref._checkpoint_files(model_dir):
        with open(os.path.join(model_dir, file_name), "rb") as f:
            entries = safetensors.deserialize(f.read())
        for name, info in entries:
            dtype, shape = info["dtype"], tuple(info["shape"])
            if dtype == "U8":
                value = np.frombuffer(info["data"], dtype=np.uint8).reshape(shape)
            else:
                value = mref.decode_tensor(dtype, shape, info["data"])
            raw[name] = (dtype, value)
    return config, raw


def unpack_nibbles(packed: np.ndarray) -> np.ndarray:
    """§2.4: byte[r, j] = q[r, 2j] | q[r, 2j+1] << 4."""
    codes = np.empty(packed.shape[:-1] + (packed.shape[-1] * 2,), np.uint8)
    codes[..., 0::2] = packed & 0xF
    codes[..., 1::2] = packed >> 4
    return codes


def expand_blocks(scales: np.ndarray, block: int, cols: int) -> np.ndarray:
    if scales.shape[-1] * block != cols:
        raise ValueError(f"scale grid {scales.shape} does not cover {cols} columns in blocks of {block}")
    return np.repeat(scales, block, axis=-1)


def weight_format(config: dict) -> tuple[str, str]:
    """(layout, scheme) from config.json.quantization_config: layout modelopt|compressed-tensors,
    scheme nvfp4|mxfp4|iq4nl16."""
    q = config.get("quantization_config") or {}
    method = q.get("quant_method")
    if method == "modelopt":
        algo = str(q.get("quant_algo", "")).lower()
        return "modelopt", {"nvfp4": "nvfp4", "mxfp4": "mxfp4", "mxfp4_16": "iq4nl16"}[algo]
    if method == "compressed-tensors":
        fmt = q.get("format")
        return "compressed-tensors", {"nvfp4-pack-quantized": "nvfp4", "mxfp4-pack-quantized": "mxfp4",
                                      "mxfp4_16": "iq4nl16"}[fmt]
    raise ValueError(f"not a 4-bit checkpoint: quantization_config {q}")


def dequantize_linear(layout: str, scheme: str, raw: dict, module: str) -> np.ndarray:
    packed = raw[module + (".weight" if layout == "modelopt" else ".weight_packed")][1]
    codes = unpack_nibbles(packed)
    cols = codes.shape[-1]
    scale_dtype, scales = raw[module + ".weight_scale"]
    if scheme == "nvfp4":  # §2.1: e2m1(q) * e4m3(S) * g_dq
        assert scale_dtype == "F8_E4M3", (module, scale_dtype)
        if layout == "modelopt":
            g_dq = float(raw[module + ".weight_scale_2"][1].reshape(-1)[0])  # amax / 2688
        else:
            g_dq = 1.0 / float(raw[module + ".weight_global_scale"][1].reshape(-1)[0])  # 1 / (2688/amax)
        return E2M1_VALUES[codes] * expand_blocks(scales, 16, cols) * g_dq
    if scheme == "mxfp4":  # §3.1: X * e2m1(P), X = 2^(e - 127) per 32
        assert scale_dtype == "U8", (module, scale_dtype)
        exponents = scales.astype(np.float64) - 127.0
        return E2M1_VALUES[codes] * expand_blocks(np.exp2(exponents), 32, cols)
    # §3.3/3.4 IQ4_NL x16: signed fp16 scale * level[code]
    assert scale_dtype == "F16", (module, scale_dtype)
    return IQ4NL_LEVELS[codes] * expand_blocks(scales, 16, cols)


def kv_scales(raw: dict, layer: int) -> tuple[float, float]:
    """§4.2 spellings (modelopt, compressed-tensors, vLLM internal, qkv_proj), §4.3 fallback."""
    a = f"model.layers.{layer}.self_attn."

    def find(which):
        for name in (f"{a}{which}_proj.{which}_scale", f"{a}{which}_scale", f"{a}attn.{which}_scale",
                     f"{a}qkv_proj.{which}_scale", f"{a}kv_scale"):
            if name in raw:
                return float(raw[name][1].reshape(-1)[0])
        return None

    k, v = find("k"), find("v")
    if k is None and v is None:
        return 1.0, 1.0
    if k is None or v is None:
        both = max(s for s in (k, v) if s is not None)
        return both, both
    return k, v


class QuantizedCheckpoint:
    """Dequantized float64 weights plus the scales the runtime emulations need."""

    def __init__(self, model_dir: str):
        self.config, raw = read_raw(model_dir)
        self.layout, self.scheme = weight_format(self.config)
        n_layers = int(self.config["num_hidden_layers"])
        self.weights: dict[str, np.ndarray] = {}
        self.input_global: dict[str, float] = {}  # module -> G of §2.7 (NVFP4 with input scale)
        self.quantized_modules: list[str] = []
        packed_suffix = ".weight" if self.layout == "modelopt" else ".weight_packed"
        for name, (dtype, value) in raw.items():
            match = mref._LAYER_RE.match(name)
            if match and int(match.group(1)) >= n_layers:
                continue  # MTP modules are not run
            if name.endswith(packed_suffix) and dtype == "U8":
                module = name[: -len(packed_suffix)]
                self.weights[module + ".weight"] = dequantize_linear(self.layout, self.scheme, raw, module)
                self.quantized_modules.append(module)
                if self.scheme == "nvfp4":
                    if module + ".input_scale" in raw:
                        self.input_global[module] = 1.0 / float(raw[module + ".input_scale"][1].reshape(-1)[0])
                    elif module + ".input_global_scale" in raw:
                        self.input_global[module] = float(raw[module + ".input_global_scale"][1].reshape(-1)[0])
            elif name.endswith(".weight") or name.endswith("_bias"):  # kept: used as stored
                if dtype not in ("BF16", "F32"):
                    raise ValueError(f"unexpected kept tensor {name} of dtype {dtype}")
                self.weights[name] = value
        self.kv = [kv_scales(raw, layer) for layer in range(n_layers)]


# ----------------------------------------------------------------------------------------------
# Runtime emulations


def e4m3_satfinite(x: np.ndarray) -> np.ndarray:
    """float32 -> E4M3 value (RNE, overflow saturates to +-448), §1.2."""
    x = np.asarray(x, F32)
    return np.clip(x, F32(-448), F32(448)).astype(ml_dtypes.float8_e4m3fn).astype(F32)


def e2m1_rne_satfinite(x: np.ndarray) -> np.ndarray:
    """float32 -> E2M1 value, §1.1 thresholds (ties to even, saturating at 6)."""
    m = np.abs(np.asarray(x, F32))
    mag = ((m > 0.25).astype(np.int64) + (m >= 0.75) + (m > 1.25) + (m >= 1.75) + (m > 2.5) +
           (m >= 3.5) + (m > 5))
    return np.where(x < 0, -1.0, 1.0) * E2M1_VALUES[mag]


def fp8_kv_roundtrip(x: np.ndarray, scale: float) -> np.ndarray:
    """§4.1: e4m3_satfinite(f32(x / scale)) * scale."""
    scaled = (np.asarray(x, F32) / F32(scale)).astype(F32)
    return e4m3_satfinite(scaled).astype(np.float64) * scale


def nvfp4_fake_quant_activation(x: np.ndarray, global_scale: float) -> np.ndarray:
    """§2.7 per token row, per 16 channels, in float32 (x is first rounded to float32, as the
    runtime holds activations in float32):
      S = e4m3_satfinite(f32(G * f32(vmax * f32(1/6)))); os = f32(G / S) (0 if S == 0)
      q = e2m1_rne_satfinite(f32(x * os));  x' = e2m1(q) * e4m3(S) / G."""
    g = F32(global_scale)
    rows, cols = x.shape
    blocks = np.asarray(x, F32).reshape(rows, cols // 16, 16)
    vmax = np.abs(blocks).max(axis=-1)
    sixth = F32(F32(1) / F32(6))
    s = e4m3_satfinite((g * (vmax * sixth).astype(F32)).astype(F32))
    with np.errstate(divide="ignore"):
        output_scale = np.where(s != 0, (g / s).astype(F32), F32(0)).astype(F32)
    q = e2m1_rne_satfinite((blocks * output_scale[..., None]).astype(F32))
    out = q * s.astype(np.float64)[..., None] / float(g)
    return out.reshape(rows, cols)


# ----------------------------------------------------------------------------------------------
# Forward pass with hooks (same math as minimax_m2_reference.forward_logits)


def _linear(x, ckpt, module, w4a4):
    if w4a4 and module in ckpt.input_global:
        x = nvfp4_fake_quant_activation(x, ckpt.input_global[module])
    return x @ ckpt.weights[module + ".weight"].T


def _attention(h, ckpt, layer, fp8_kv, w4a4):
    config, w = ckpt.config, ckpt.weights
    prefix = f"model.layers.{layer}.self_attn."
    n_tokens = h.shape[0]
    n_heads, n_kv = int(config["num_attention_heads"]), int(config["num_key_value_heads"])
    head_dim = int(config["head_dim"])
    rotary_dim = int(config.get("rotary_dim", head_dim // 2))
    eps, theta = float(config["rms_norm_eps"]), float(config["rope_theta"])
    q = _linear(h, ckpt, prefix + "q_proj", w4a4)
    k = _linear(h, ckpt, prefix + "k_proj", w4a4)
    v = _linear(h, ckpt, prefix + "v_proj", w4a4)
    q = mref.rms_norm(q, w[prefix + "q_norm.weight"], eps)
    k = mref.rms_norm(k, w[prefix + "k_norm.weight"], eps)
    positions = np.arange(n_tokens)
    q = mref.rope_rotate_half(q.reshape(n_tokens, n_heads, head_dim), positions, rotary_dim, theta)
    k = mref.rope_rotate_half(k.reshape(n_tokens, n_kv, head_dim), positions, rotary_dim, theta)
    v = v.reshape(n_tokens, n_kv, head_dim)
    if fp8_kv:  # what the cache holds: keys after k_norm and RoPE, values after v_proj
        k_scale, v_scale = ckpt.kv[layer]
        k, v = fp8_kv_roundtrip(k, k_scale), fp8_kv_roundtrip(v, v_scale)
    group = n_heads // n_kv
    scale = 1.0 / math.sqrt(head_dim)
    causal = np.tril(np.ones((n_tokens, n_tokens), dtype=bool))
    out = np.empty((n_tokens, n_heads, head_dim))
    for head in range(n_heads):
        kv_head = head // group
        scores = np.where(causal, (q[:, head, :] @ k[:, kv_head, :].T) * scale, -np.inf)
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        out[:, head, :] = probs @ v[:, kv_head, :]
    return _linear(out.reshape(n_tokens, n_heads * head_dim), ckpt, prefix + "o_proj", w4a4)


def _moe(h, ckpt, layer, w4a4):
    prefix = f"model.layers.{layer}.block_sparse_moe."
    chosen, mix = mref.route(h, ckpt.weights, prefix, ckpt.config)
    out = np.zeros_like(h)
    for expert in np.unique(chosen):
        rows, slots = np.nonzero(chosen == expert)
        e = f"{prefix}experts.{int(expert)}."
        x = h[rows]
        mid = mref.silu(_linear(x, ckpt, e + "w1", w4a4)) * _linear(x, ckpt, e + "w3", w4a4)
        out[rows] += mix[rows, slots][:, None] * _linear(mid, ckpt, e + "w2", w4a4)
    return out


def quantized_forward_logits(ckpt: QuantizedCheckpoint, tokens, fp8_kv=False, w4a4=False) -> np.ndarray:
    config, w = ckpt.config, ckpt.weights
    mref.check_config(config)
    eps = float(config["rms_norm_eps"])
    x = w["model.embed_tokens.weight"][np.asarray(tokens, dtype=np.int64)]
    for layer in range(int(config["num_hidden_layers"])):
        p = f"model.layers.{layer}."
        h = mref.rms_norm(x, w[p + "input_layernorm.weight"], eps)
        x = x + _attention(h, ckpt, layer, fp8_kv, w4a4)
        h = mref.rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        x = x + _moe(h, ckpt, layer, w4a4)
    x = mref.rms_norm(x, w["model.norm.weight"], eps)
    return x @ w["lm_head.weight"].T
