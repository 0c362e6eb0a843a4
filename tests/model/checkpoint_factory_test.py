"""Self-checks of checkpoint_factory: the parity tests only mean something if the generated
checkpoints really are in the formats they claim (FP8 block scales, BF16 scales/router, shards,
MTP tensors that matter if wrongly loaded)."""

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checkpoint_factory as factory  # noqa: E402
import minimax_m2_reference as ref  # noqa: E402


def test_e4m3_encoder_round_trips_every_finite_code():
    codes = np.array([c for c in range(256) if c not in (0x7F, 0xFF)], dtype=np.uint8)
    np.testing.assert_array_equal(factory.f64_to_e4m3fn_codes(ref.fp8_e4m3_codes_to_f64(codes)), codes)


def test_e4m3_encoder_rounds_to_nearest_even_and_saturates():
    positive = ref.E4M3FN_TABLE[:0x7F]
    midpoints = (positive[1:] + positive[:-1]) / 2  # ties between code c and c + 1
    got = factory.f64_to_e4m3fn_codes(midpoints)
    lower = np.arange(0x7E)
    np.testing.assert_array_equal(got, np.where(lower % 2 == 0, lower, lower + 1))
    # Just off the midpoint goes to the nearer neighbour.
    np.testing.assert_array_equal(factory.f64_to_e4m3fn_codes(midpoints * (1 + 1e-9)), lower + 1)
    assert factory.f64_to_e4m3fn_codes(np.array([1000.0, -500.0])).tolist() == [0x7E, 0xFE]
    assert ref.E4M3FN_TABLE[0x7E] == 448.0 and ref.E4M3FN_TABLE[0x08] == 2.0**-6
    assert ref.E4M3FN_TABLE[0x01] == 2.0**-9 and np.isnan(ref.E4M3FN_TABLE[0x7F])


def test_bf16_rounding_is_nearest_even():
    one = np.float32(1.0)
    ulp = np.float32(2.0**-7)
    values = np.array([one + ulp / 2, one + ulp * 1.5, one + ulp * 0.51, -3.0], dtype=np.float32)
    back = factory.bf16_bits_to_f32(factory.f32_to_bf16_bits(values))
    np.testing.assert_array_equal(back, np.array([1.0, 1.0 + 2 * ulp, 1.0 + ulp, -3.0], dtype=np.float32))


@pytest.mark.parametrize("bf16_scales", [False, True])
def test_fp8_block_quantization_partial_blocks(bf16_scales):
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((300, 200)) * np.linspace(0.01, 3.0, 200)[None, :]
    codes, scales = factory.quantize_fp8_blocks(weight, bf16_scales)
    assert scales.shape == (3, 2)  # ceil(300/128) x ceil(200/128)
    multiplier = factory.bf16_bits_to_f32(scales) if bf16_scales else scales
    restored = ref.dequantize_block_fp8(ref.fp8_e4m3_codes_to_f64(codes), multiplier.astype(np.float64))
    # e4m3 keeps 3 mantissa bits: error at most half a step, 2^-4 relative (plus the subnormal floor).
    floor = np.repeat(np.repeat(multiplier, 128, 0), 128, 1)[:300, :200] * 2.0**-10
    assert np.all(np.abs(restored - weight) <= np.abs(weight) * 2.0**-4 + floor)
    if not bf16_scales:  # s = amax / 448: each block's largest magnitude lands exactly on 448
        for bi in range(3):
            for bj in range(2):
                block = codes[bi * 128 : (bi + 1) * 128, bj * 128 : (bj + 1) * 128]
                assert (block & 0x7F).max() == 0x7E


def test_sharded_checkpoint_has_consistent_index(tmp_path):
    spec = factory.CheckpointSpec(seed=1, shards=3, weight_dtype="fp8", mtp_layers=1)
    factory.write_checkpoint(spec, str(tmp_path))
    with open(tmp_path / "model.safetensors.index.json") as f:
        weight_map = json.load(f)["weight_map"]
    assert len(set(weight_map.values())) == 3
    assert "model.layers.2.self_attn.q_proj.weight" in weight_map  # MTP module present...
    _, weights = ref.load_checkpoint(str(tmp_path))
    assert not any(name.startswith("model.layers.2.") for name in weights)  # ...and skipped
    assert "model.layers.1.block_sparse_moe.experts.7.w2.weight" in weights


def test_storage_dtypes_are_as_specified(tmp_path):
    cases = {
        factory.CheckpointSpec(weight_dtype="fp8"): {
            "model.layers.0.block_sparse_moe.experts.0.w1.weight": "F8_E4M3",
            "model.layers.0.block_sparse_moe.experts.0.w1.weight_scale_inv": "F32",
            "model.layers.0.block_sparse_moe.gate.weight": "F32",
            "model.layers.0.block_sparse_moe.e_score_correction_bias": "F32",
            "model.embed_tokens.weight": "BF16",
            "lm_head.weight": "BF16",
        },
        factory.CheckpointSpec(weight_dtype="fp8-bf16-scales", router_dtype="bf16"): {
            "model.layers.1.self_attn.o_proj.weight_scale_inv": "BF16",
            "model.layers.1.block_sparse_moe.gate.weight": "BF16",
            "model.layers.1.block_sparse_moe.e_score_correction_bias": "BF16",
        },
        factory.CheckpointSpec(weight_dtype="f32"): {
            "model.layers.0.self_attn.q_proj.weight": "F32",
            "model.layers.0.self_attn.q_norm.weight": "F32",
            "lm_head.weight": "F32",
        },
    }
    for i, (spec, expected) in enumerate(cases.items()):
        model_dir = factory.write_checkpoint(spec, str(tmp_path / str(i)))
        for tensor, dtype in expected.items():
            assert factory.stored_dtype(model_dir, tensor) == dtype, (spec.weight_dtype, tensor)


def test_mtp_tensors_would_change_the_logits_if_loaded(tmp_path):
    """The MTP configs only test something if running the extra layers changes the result."""
    spec = factory.CheckpointSpec(seed=3, mtp_layers=1)
    model_dir = factory.write_checkpoint(spec, str(tmp_path))
    tokens = list(range(1, 17))
    config, weights = ref.load_checkpoint(model_dir)
    too_many = dict(config, num_hidden_layers=spec.layers + 1, attn_type_list=[1] * (spec.layers + 1))
    _, all_weights = ref.load_checkpoint(model_dir, keep_layers=spec.layers + 1)
    a = ref.forward_logits(config, weights, tokens)
    b = ref.forward_logits(too_many, all_weights, tokens)
    assert np.linalg.norm(a - b) / np.linalg.norm(a) > 1e-2


def test_routing_bias_changes_expert_choice():
    """Selection must depend on the bias, or a loader ignoring it would pass the parity tests."""
    spec = factory.CheckpointSpec(seed=4)
    tensors = factory.generate_tensors(spec)
    config = factory.build_config(spec)
    with_bias = dict(config)
    without_bias = dict(config, use_routing_bias=False)
    weights = {}
    for name, (dtype, shape, array) in tensors.items():
        code = {"bfloat16": "BF16", "float32": "F32", "float8_e4m3fn": "F8_E4M3"}[dtype]
        weights[name] = ref.decode_tensor(code, shape, array.tobytes())
    h = np.random.default_rng(5).standard_normal((64, spec.hidden))
    prefix = "model.layers.0.block_sparse_moe."
    a, _ = ref.route(h, weights, prefix, with_bias)
    b, _ = ref.route(h, weights, prefix, without_bias)
    changed = np.mean([set(x) != set(y) for x, y in zip(a, b)])
    assert changed > 0.2
