"""m2fp4's forward pass against the float64 numpy reference on checkpoints it has never seen.

Checkpoints come from checkpoint_factory (independent of m2fp4's make-tiny) in every storage
variant the spec allows, plus make-tiny's own output read by the reference (which checks that
make-tiny writes a valid HF checkpoint). Contract used:
  m2fp4 run --model DIR --tokens 1,2,3 --max-tokens 0 --dump-logits OUT.f32
    -> OUT.f32: float32 little-endian [n_prompt_tokens, vocab]
  m2fp4 run --model DIR --tokens 1,2,3 --max-tokens N
    -> greedy; the last line of stdout holds the N generated ids
  m2fp4 make-tiny --out DIR --preset tiny --seed S --dtype bf16|f32|fp8
"""

import dataclasses
import os
import re
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checkpoint_factory as factory  # noqa: E402
import minimax_m2_reference as ref  # noqa: E402

EXE = os.environ.get("M2FP4_EXE")
if not EXE:
    pytest.skip("M2FP4_EXE is not set (ctest sets it)", allow_module_level=True)

REL_TOL = 1e-4  # float32 compute against float64 (golden/README.md)
# Positions whose two best reference logits are closer than this (relative to the row's largest
# magnitude) are true ties at float32 precision: either token is a correct argmax there.
TIE_TOL = 1e-5

CONFIGS = {
    "bf16-3shards": factory.CheckpointSpec(seed=11, shards=3),
    "bf16-8heads-1kv": factory.CheckpointSpec(seed=12, heads=8, kv_heads=1),
    "f32-6heads-3kv-hd32-rd16": factory.CheckpointSpec(
        seed=13, weight_dtype="f32", hidden=96, heads=6, kv_heads=3, head_dim=32, rotary_dim=16,
        intermediate=48, rope_theta=10000.0,
    ),
    "fp8-f32scales-wide-mtp": factory.CheckpointSpec(
        seed=14, weight_dtype="fp8", hidden=160, intermediate=144, head_dim=48, rotary_dim=16,
        vocab=300, mtp_layers=1, shards=2,
    ),
    "fp8-bf16scales-bf16router": factory.CheckpointSpec(
        seed=15, weight_dtype="fp8-bf16-scales", router_dtype="bf16", layers=3, experts=16, top_k=4,
    ),
    "bf16-bf16router-mtp": factory.CheckpointSpec(
        seed=16, router_dtype="bf16", layers=3, experts=6, top_k=3, vocab=1000, mtp_layers=2,
    ),
    "f32-top1": factory.CheckpointSpec(seed=17, weight_dtype="f32", experts=4, top_k=1, hidden=48),
}


def prompt_for(vocab: int, seed: int, length: int) -> list[int]:
    rng = np.random.default_rng(1000 + seed)
    return [int(t) for t in rng.integers(0, vocab, length)]


def run_m2fp4(args, timeout=120) -> subprocess.CompletedProcess:
    result = subprocess.run([EXE, *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"m2fp4 {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
    return result


def m2fp4_logits(model_dir: str, tokens: list[int], out_path: str, vocab: int) -> np.ndarray:
    # f32 activations: the reference's math (the default rounds BF16 matmul activations to bf16,
    # tested against its scalar twin in tests/kernels/matmul_bf16dot_test.cc).
    run_m2fp4(["run", "--model", model_dir, "--tokens", ",".join(map(str, tokens)), "--max-tokens", "0",
               "--dump-logits", out_path, "--bf16-activations", "f32"])
    logits = np.fromfile(out_path, dtype="<f4")
    assert logits.size == len(tokens) * vocab, f"{out_path}: {logits.size} values, want {len(tokens)} x {vocab}"
    return logits.reshape(len(tokens), vocab).astype(np.float64)


def m2fp4_greedy(model_dir: str, tokens: list[int], n_new: int) -> list[int]:
    result = run_m2fp4(["run", "--model", model_dir, "--tokens", ",".join(map(str, tokens)),
                        "--max-tokens", str(n_new)])
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, f"run printed nothing; stderr:\n{result.stderr}"
    return [int(t) for t in re.findall(r"-?\d+", lines[-1])]


def assert_argmax_agrees(ours_ids, reference: np.ndarray, what: str) -> None:
    """ours_ids[i] must be the reference argmax of row i, or tied with it within TIE_TOL."""
    for row, (got, ref_row) in enumerate(zip(ours_ids, reference)):
        best = float(ref_row.max())
        slack = TIE_TOL * float(np.abs(ref_row).max())
        assert ref_row[got] >= best - slack, (
            f"{what}: position {row}: m2fp4 picks {got} (reference logit {ref_row[got]:.6f}), "
            f"reference argmax {int(ref_row.argmax())} ({best:.6f})"
        )


def compare_logits(ours: np.ndarray, reference: np.ndarray, what: str) -> None:
    assert np.all(np.isfinite(ours)), f"{what}: non-finite logits"
    rel = np.linalg.norm(ours - reference) / np.linalg.norm(reference)
    print(f"{what}: relative error {rel:.3e}")
    assert rel < REL_TOL, f"{what}: relative error {rel:.3e} >= {REL_TOL}"
    assert_argmax_agrees(ours.argmax(axis=-1), reference, what)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """name -> (model dir, spec), written once per module."""
    root = tmp_path_factory.mktemp("parity")
    return {name: (factory.write_checkpoint(spec, str(root / name)), spec) for name, spec in CONFIGS.items()}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_forward_logits_match_reference(name, checkpoints, tmp_path):
    model_dir, spec = checkpoints[name]
    tokens = prompt_for(spec.vocab, spec.seed, 10 + (spec.seed * 7) % 31)  # 10..40 tokens
    reference = ref.reference_logits(model_dir, tokens)
    ours = m2fp4_logits(model_dir, tokens, str(tmp_path / "logits.f32"), spec.vocab)
    compare_logits(ours, reference, name)


@pytest.mark.parametrize("name", ["bf16-3shards", "fp8-f32scales-wide-mtp", "bf16-bf16router-mtp"])
def test_greedy_decode_follows_reference_argmax_chain(name, checkpoints):
    model_dir, spec = checkpoints[name]
    prompt = prompt_for(spec.vocab, spec.seed + 50, 12)
    n_new = 5
    generated = m2fp4_greedy(model_dir, prompt, n_new)
    assert len(generated) == n_new, f"expected {n_new} generated ids on the last stdout line, got {generated}"
    assert all(0 <= t < spec.vocab for t in generated), generated
    # One reference pass over prompt + generated: the logits at position len(prompt)-1+i are
    # those that chose generated[i] (the cache-based decode must match the full recompute).
    config, weights = ref.load_checkpoint(model_dir)
    reference = ref.forward_logits(config, weights, prompt + generated)
    assert_argmax_agrees(generated, reference[len(prompt) - 1 : len(prompt) - 1 + n_new], f"{name} decode")


@pytest.mark.parametrize("dtype,seed", [("bf16", 3), ("f32", 4), ("fp8", 5)])
def test_make_tiny_checkpoint_is_valid_hf_and_runs_like_reference(dtype, seed, tmp_path):
    model_dir = str(tmp_path / f"tiny-{dtype}")
    run_m2fp4(["make-tiny", "--out", model_dir, "--preset", "tiny", "--seed", str(seed), "--dtype", dtype])
    config, weights = ref.load_checkpoint(model_dir)
    assert config["architectures"] == ["MiniMaxM2ForCausalLM"]
    expected_dtypes = {"bf16": "BF16", "f32": "F32", "fp8": "F8_E4M3"}
    q_proj_dtype = factory.stored_dtype(model_dir, "model.layers.0.self_attn.q_proj.weight")
    assert q_proj_dtype == expected_dtypes[dtype], f"make-tiny --dtype {dtype} wrote q_proj as {q_proj_dtype}"
    if dtype == "fp8":
        assert "quantization_config" in config
    vocab = int(config["vocab_size"])
    tokens = prompt_for(vocab, seed, 20)
    reference = ref.forward_logits(config, weights, tokens)
    ours = m2fp4_logits(model_dir, tokens, str(tmp_path / "logits.f32"), vocab)
    compare_logits(ours, reference, f"make-tiny {dtype}")
