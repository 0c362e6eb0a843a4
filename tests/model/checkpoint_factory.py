"""Writes random MiniMax-M2 checkpoints in the Hugging Face layout (numpy + safetensors).

Independent of m2fp4's `make-tiny`: this is how the parity tests get checkpoints m2fp4 has never
seen, in every storage variant the spec allows (BF16 / F32 weights, FP8 E4M3 with F32 or BF16
128x128 block scales, F32 or BF16 router, sharded with an index, extra MTP layers to ignore).

Weights are scaled so activations stay O(1): linear weights normal / sqrt(fan_in), norm weights
around 1, embeddings unit normal.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import safetensors

FP8_MAX = 448.0
FP8_BLOCK = 128


@dataclasses.dataclass(frozen=True)
class CheckpointSpec:
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 16
    rotary_dim: int = 8
    experts: int = 8
    top_k: int = 2
    intermediate: int = 32
    vocab: int = 512
    seed: int = 0
    # "bf16", "f32", "fp8" (F32 scales) or "fp8-bf16-scales"
    weight_dtype: str = "bf16"
    router_dtype: str = "f32"  # "f32" or "bf16"
    shards: int = 1
    mtp_layers: int = 0  # extra model.layers.{layers + i}.* tensors that must be ignored
    rope_theta: float = 5000000.0
    rms_norm_eps: float = 1e-6


# ----------------------------------------------------------------------------------------------
# Number formats (writing side)


def f32_to_bf16_bits(values: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (round to nearest, ties to even), returned as uint16 bits."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def _e4m3fn_positive_values() -> np.ndarray:
    """Values of codes 0x00..0x7E (all non-negative finite e4m3fn values, increasing)."""
    out = []
    for code in range(0x7F):
        exponent, mantissa = code >> 3, code & 7
        if exponent == 0:
            out.append(mantissa / 8.0 * 2.0**-6)
        else:
            out.append((1.0 + mantissa / 8.0) * 2.0 ** (exponent - 7))
    return np.array(out, dtype=np.float64)


_E4M3_POSITIVE = _e4m3fn_positive_values()


def f64_to_e4m3fn_codes(values: np.ndarray) -> np.ndarray:
    """Round to the nearest e4m3fn value (ties to the even code, i.e. even mantissa), saturating
    at 448. Returns uint8 codes."""
    magnitude = np.minimum(np.abs(values), FP8_MAX)
    hi = np.clip(np.searchsorted(_E4M3_POSITIVE, magnitude, side="left"), 0, len(_E4M3_POSITIVE) - 1)
    lo = np.maximum(hi - 1, 0)
    d_lo = magnitude - _E4M3_POSITIVE[lo]
    d_hi = _E4M3_POSITIVE[hi] - magnitude
    take_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (hi % 2 == 0))
    codes = np.where(take_hi, hi, lo).astype(np.uint8)
    negative = np.signbit(values)  # keeps the sign of -0 and of values rounding to zero, as a cast does
    return codes | np.where(negative, np.uint8(0x80), np.uint8(0))


def quantize_fp8_blocks(weight: np.ndarray, bf16_scales: bool) -> tuple[np.ndarray, np.ndarray]:
    """DeepSeek-V3 convention per 128x128 block (edge blocks partial): s = amax / 448, stored
    weight_scale_inv = s, q = w / s rounded to e4m3fn. Returns (codes uint8, scales as stored:
    float32 or bf16 bits)."""
    rows, cols = weight.shape
    grid = (-(-rows // FP8_BLOCK), -(-cols // FP8_BLOCK))
    scales = np.empty(grid, dtype=np.float32)
    for bi in range(grid[0]):
        for bj in range(grid[1]):
            block = weight[bi * FP8_BLOCK : (bi + 1) * FP8_BLOCK, bj * FP8_BLOCK : (bj + 1) * FP8_BLOCK]
            amax = float(np.max(np.abs(block)))
            scales[bi, bj] = amax / FP8_MAX if amax > 0 else 1.0
    stored = f32_to_bf16_bits(scales) if bf16_scales else scales
    effective = bf16_bits_to_f32(stored) if bf16_scales else scales  # what a reader multiplies by
    expanded = np.repeat(np.repeat(effective.astype(np.float64), FP8_BLOCK, 0), FP8_BLOCK, 1)
    codes = f64_to_e4m3fn_codes(weight / expanded[:rows, :cols])
    return codes, stored


# ----------------------------------------------------------------------------------------------
# safetensors writing


class _TensorStore:
    """name -> (safetensors constructor dtype name, shape, contiguous array holding the bytes)."""

    def __init__(self) -> None:
        self.tensors: dict[str, tuple[str, list[int], np.ndarray]] = {}

    def add(self, name: str, dtype: str, shape, array: np.ndarray) -> None:
        assert name not in self.tensors, name
        self.tensors[name] = (dtype, [int(s) for s in shape], np.ascontiguousarray(array))


def _write_safetensors(path: str, tensors: dict[str, tuple[str, list[int], np.ndarray]]) -> None:
    specs = {}
    for name, (dtype, shape, array) in tensors.items():
        little = array.astype(array.dtype.newbyteorder("<"), copy=False)
        if hasattr(safetensors, "TensorSpec"):  # safetensors >= 0.8 takes pointers
            specs[name] = safetensors.TensorSpec(
                dtype=dtype, shape=shape, data_ptr=little.ctypes.data, data_len=little.nbytes
            )
        else:  # older releases take the bytes themselves
            specs[name] = {"dtype": dtype, "shape": shape, "data": little.tobytes()}
    safetensors.serialize_file(specs, path, metadata={"format": "pt"})


# ----------------------------------------------------------------------------------------------
# Checkpoint generation


def build_config(spec: CheckpointSpec) -> dict:
    config = {
        "architectures": ["MiniMaxM2ForCausalLM"],
        "model_type": "minimax_m2",
        "attn_type_list": [1] * spec.layers,
        "head_dim": spec.head_dim,
        "hidden_act": "silu",
        "hidden_size": spec.hidden,
        "intermediate_size": spec.intermediate,
        "max_position_embeddings": 4096,
        "mtp_transformer_layers": 1,
        "num_attention_heads": spec.heads,
        "num_experts_per_tok": spec.top_k,
        "num_hidden_layers": spec.layers,
        "num_key_value_heads": spec.kv_heads,
        "num_local_experts": spec.experts,
        "num_mtp_modules": spec.mtp_layers,
        "qk_norm_type": "per_layer",
        "rms_norm_eps": spec.rms_norm_eps,
        "rope_theta": spec.rope_theta,
        "rotary_dim": spec.rotary_dim,
        "router_aux_loss_coef": 0.001,
        "router_jitter_noise": 0.0,
        "output_router_logits": False,
        "scoring_func": "sigmoid",
        "shared_intermediate_size": 0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32" if spec.weight_dtype == "f32" else "bfloat16",
        "use_cache": True,
        "use_mtp": spec.mtp_layers > 0,
        "use_qk_norm": True,
        "use_routing_bias": True,
        "vocab_size": spec.vocab,
    }
    if spec.weight_dtype.startswith("fp8"):
        config["quantization_config"] = {
            "activation_scheme": "dynamic",
            "fmt": "float8_e4m3fn",
            "quant_method": "fp8",
            "weight_block_size": [FP8_BLOCK, FP8_BLOCK],
            "modules_to_not_convert": ["gate", "e_score_correction_bias", "lm_head"],
        }
    return config


def _add_plain(store: _TensorStore, name: str, value: np.ndarray, dtype: str) -> None:
    """Stores an unquantized tensor as BF16 (rounded) or F32."""
    if dtype == "f32":
        store.add(name, "float32", value.shape, value.astype(np.float32))
    elif dtype == "bf16":
        store.add(name, "bfloat16", value.shape, f32_to_bf16_bits(value.astype(np.float32)))
    else:
        raise ValueError(f"unknown plain dtype {dtype}")


def _add_linear(store: _TensorStore, name: str, value: np.ndarray, weight_dtype: str) -> None:
    """A projection FP8 checkpoints quantize: attention q/k/v/o and expert w1/w2/w3."""
    if weight_dtype in ("fp8", "fp8-bf16-scales"):
        bf16_scales = weight_dtype == "fp8-bf16-scales"
        codes, scales = quantize_fp8_blocks(value, bf16_scales)
        store.add(name, "float8_e4m3fn", value.shape, codes)
        store.add(name + "_scale_inv", "bfloat16" if bf16_scales else "float32", scales.shape, scales)
    else:
        _add_plain(store, name, value, weight_dtype)


def _add_layer(store: _TensorStore, spec: CheckpointSpec, layer: int, rng: np.random.Generator) -> None:
    h, q_width, kv_width = spec.hidden, spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim
    plain = "f32" if spec.weight_dtype == "f32" else "bf16"
    p = f"model.layers.{layer}."

    def linear(out_features: int, in_features: int) -> np.ndarray:
        return rng.standard_normal((out_features, in_features)) / np.sqrt(in_features)

    def norm(width: int) -> np.ndarray:
        return 1.0 + 0.2 * rng.standard_normal(width)

    _add_plain(store, p + "input_layernorm.weight", norm(h), plain)
    _add_plain(store, p + "post_attention_layernorm.weight", norm(h), plain)
    a = p + "self_attn."
    _add_linear(store, a + "q_proj.weight", linear(q_width, h), spec.weight_dtype)
    _add_linear(store, a + "k_proj.weight", linear(kv_width, h), spec.weight_dtype)
    _add_linear(store, a + "v_proj.weight", linear(kv_width, h), spec.weight_dtype)
    _add_linear(store, a + "o_proj.weight", linear(h, q_width), spec.weight_dtype)
    _add_plain(store, a + "q_norm.weight", norm(q_width), plain)
    _add_plain(store, a + "k_norm.weight", norm(kv_width), plain)
    m = p + "block_sparse_moe."
    # Router logits O(1) so sigmoid scores spread over (0, 1); bias comparable to the spread so
    # that it really changes which experts are chosen.
    _add_plain(store, m + "gate.weight", 2.0 * linear(spec.experts, h), spec.router_dtype)
    _add_plain(store, m + "e_score_correction_bias", 0.3 * rng.standard_normal(spec.experts), spec.router_dtype)
    for e in range(spec.experts):
        x = f"{m}experts.{e}."
        _add_linear(store, x + "w1.weight", linear(spec.intermediate, h), spec.weight_dtype)
        _add_linear(store, x + "w3.weight", linear(spec.intermediate, h), spec.weight_dtype)
        _add_linear(store, x + "w2.weight", linear(h, spec.intermediate), spec.weight_dtype)


def _add_mtp_module(store: _TensorStore, spec: CheckpointSpec, layer: int, rng: np.random.Generator) -> None:
    """An MTP module as DeepSeek-style checkpoints lay it out: a full decoder layer (so a loader
    that counts layers from the weight map would run it) plus MTP-only tensors."""
    _add_layer(store, spec, layer, rng)
    p = f"model.layers.{layer}."
    plain = "f32" if spec.weight_dtype == "f32" else "bf16"
    _add_plain(store, p + "enorm.weight", np.ones(spec.hidden), plain)
    _add_plain(store, p + "hnorm.weight", np.ones(spec.hidden), plain)
    _add_plain(store, p + "eh_proj.weight", rng.standard_normal((spec.hidden, 2 * spec.hidden)), plain)
    _add_plain(store, p + "shared_head.norm.weight", np.ones(spec.hidden), plain)


def generate_tensors(spec: CheckpointSpec) -> dict[str, tuple[str, list[int], np.ndarray]]:
    if spec.heads % spec.kv_heads != 0 or spec.rotary_dim % 2 or spec.rotary_dim > spec.head_dim:
        raise ValueError(f"inconsistent spec {spec}")
    rng = np.random.default_rng(spec.seed)
    store = _TensorStore()
    plain = "f32" if spec.weight_dtype == "f32" else "bf16"
    _add_plain(store, "model.embed_tokens.weight", rng.standard_normal((spec.vocab, spec.hidden)), plain)
    for layer in range(spec.layers):
        _add_layer(store, spec, layer, rng)
    _add_plain(store, "model.norm.weight", 1.0 + 0.2 * rng.standard_normal(spec.hidden), plain)
    lm_head = rng.standard_normal((spec.vocab, spec.hidden)) * (3.0 / np.sqrt(spec.hidden))
    _add_plain(store, "lm_head.weight", lm_head, plain)
    for extra in range(spec.mtp_layers):
        _add_mtp_module(store, spec, spec.layers + extra, rng)
    return store.tensors


def write_checkpoint(spec: CheckpointSpec, out_dir: str) -> str:
    """Writes config.json and the weights (one file, or `shards` files plus
    model.safetensors.index.json). Returns out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(build_config(spec), f, indent=2)
    tensors = generate_tensors(spec)
    if spec.shards <= 1:
        _write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors)
        return out_dir
    # Interleave names over shards so each shard holds pieces of several layers (and a weight
    # and its scale may land in different files, which loaders must handle via the index).
    names = list(tensors)
    weight_map, total = {}, 0
    for shard in range(spec.shards):
        file_name = f"model-{shard + 1:05d}-of-{spec.shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[shard :: spec.shards]}
        _write_safetensors(os.path.join(out_dir, file_name), part)
        for n, (_, _, array) in part.items():
            weight_map[n] = file_name
            total += array.nbytes
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
    return out_dir


def stored_dtype(model_dir: str, name: str) -> str:
    """The safetensors dtype code ("BF16", "F8_E4M3", ...) a checkpoint stores `name` in."""
    file_name = "model.safetensors"
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            file_name = json.load(f)["weight_map"][name]
    with open(os.path.join(model_dir, file_name), "rb") as f:
        return dict(safetensors.deserialize(f.read()))[name]["dtype"]
