"""`m2fp4 quantize` end to end: every recipe x layout on tiny BF16 / FP8 / F32 checkpoints,
checked by the independent export_checker.py (names, shapes, dtypes, bit-exact codes and scales,
calibrated input and KV scales against a float64 reference forward, config files); bad input;
and a resume after SIGKILL that must reproduce an uninterrupted run byte for byte."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "model"))
import checkpoint_factory as cf  # noqa: E402
import export_checker as ec  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

EXE = os.environ.get("M2FP4_EXE", "m2fp4")
MAX_SEQ = 24
CALIB_TEXTS = [
    "The quick brown fox jumps over the lazy dog, again and again and again.",
    "def f(x):\n    return x * 2\n\nprint(f(21))",
    "Quantization maps many values to few; calibration decides the scale. 12 34 56.",
    "Paris is the capital of France. Berlin is the capital of Germany.",
    "User: hello?\nAssistant: Hi! How can I help you today?",
]
PAIRS = [(r, f) for r in ec.RECIPES for f in ("compressed-tensors", "modelopt")]


def run(*args, check=True):
    p = subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"m2fp4 {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


def quantize(src, out, recipe, layout, *extra, check=True):
    return run("quantize", "--model", str(src), "--out", str(out), "--recipe", recipe,
               "--format", layout, "--quiet", *extra, check=check)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("quantize")
    calib = root / "calib.jsonl"
    calib.write_text("".join(json.dumps({"text": t}) + "\n" for t in CALIB_TEXTS))
    models = {}
    for name, dtype, seed in (("bf16", "bf16", 11), ("fp8", "fp8", 12), ("f32", "f32", 13)):
        run("make-tiny", "--out", str(root / name), "--preset", "tiny", "--seed", str(seed),
            "--dtype", dtype)
        models[name] = root / name
    return root, calib, models


def calib_tokens(model_dir):
    """The calibration samples as m2fp4 must tokenize them (Hugging Face tokenizers peer)."""
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    return [tok.encode(t).ids[:MAX_SEQ] for t in CALIB_TEXTS]


def check(src, out, recipe, layout, **kw):
    return ec.check_export(str(src), str(out), recipe, layout, **kw)


@pytest.mark.parametrize("source", ["bf16", "fp8"])
@pytest.mark.parametrize("recipe,layout", PAIRS)
def test_recipe_layout_passes_checker(work, source, recipe, layout):
    root, calib, models = work
    src, out = models[source], root / f"out-{source}-{recipe}-{layout}"
    quantize(src, out, recipe, layout, "--calib", str(calib), "--max-seq", str(MAX_SEQ))
    summary = check(src, out, recipe, layout, samples=calib_tokens(src))
    assert summary["quantized"] > 0
    if ec.RECIPES[recipe]["experts"] == "nvfp4":
        # modelopt arithmetic for modelopt, bf16 intermediates for CT on a bf16 model (§2.2)
        assert summary["nvfp4_rule"] == (["modelopt"] if layout == "modelopt" else ["ct-bf16"])
        assert summary["checked_inputs"] > 0
    assert not os.path.exists(out / ".m2fp4-work")


def test_f32_model_uses_f32_intermediates(work):
    root, calib, models = work
    out = root / "out-f32"
    quantize(models["f32"], out, "nvfp4-experts-fp8kv", "compressed-tensors", "--calib",
             str(calib), "--max-seq", str(MAX_SEQ))
    summary = check(models["f32"], out, "nvfp4-experts-fp8kv", "compressed-tensors",
                    samples=calib_tokens(models["f32"]))
    assert summary["nvfp4_rule"] == ["ct-f32"]


def test_all_experts_and_ignore_patterns(work):
    root, calib, models = work
    out = root / "out-all-experts"
    ignore = ["re:model\\.layers\\.1\\.self_attn\\..*", "model.layers.0.block_sparse_moe.experts.3.*"]
    quantize(models["bf16"], out, "nvfp4", "modelopt", "--calib", str(calib), "--max-seq",
             str(MAX_SEQ), "--all-experts", *[a for p in ignore for a in ("--ignore", p)])
    summary = check(models["bf16"], out, "nvfp4", "modelopt", ignore=ignore,
                    samples=calib_tokens(models["bf16"]), all_experts=True)
    # 2 layers x (4 attention + 8 experts x 3) minus 4 attention minus 3 expert matrices
    assert summary["quantized"] == 2 * (4 + 24) - 4 - 3


def test_factory_checkpoint_fp8_bf16_scales_sharded_with_mtp(tmp_path):
    """An FP8 source with BF16 block scales, F32 router, sharded with an index, an MTP layer to
    drop, no tokenizer (synthetic calibration ids); output sharded too."""
    spec = cf.CheckpointSpec(hidden=128, layers=2, heads=4, kv_heads=2, head_dim=32,
                             rotary_dim=16, experts=4, top_k=2, intermediate=64, vocab=256,
                             seed=5, weight_dtype="fp8-bf16-scales", shards=2, mtp_layers=1)
    src = cf.write_checkpoint(spec, str(tmp_path / "src"))
    out = tmp_path / "out"
    p = quantize(src, out, "nvfp4", "compressed-tensors", "--calib-samples", "3", "--max-seq", "16",
                 "--max-shard-size", "0.1")
    assert "synthetic token ids" in p.stdout and "not exported" in p.stdout
    assert os.path.exists(out / "model.safetensors.index.json")
    samples = [ec.synthetic_tokens(i, 16, 256) for i in range(3)]
    summary = check(src, out, "nvfp4", "compressed-tensors", samples=samples)
    assert summary["kept"] == 3  # two routers (F32 -> bf16) and lm_head


def test_checker_catches_corruption(work, tmp_path):
    """The checker is not vacuous: one flipped code byte or a changed input scale fails it."""
    root, calib, models = work
    src, out = models["bf16"], tmp_path / "q"
    quantize(src, out, "nvfp4", "modelopt", "--calib", str(calib), "--max-seq", str(MAX_SEQ))
    folder = ec.Folder(str(out))
    for name, delta in (("model.layers.1.block_sparse_moe.experts.2.w3.weight", 0),
                        ("model.layers.0.self_attn.o_proj.input_scale", 2)):
        _, _, raw, file = folder.tensors[name]
        path = out / file
        blob = bytearray(path.read_bytes())
        at = blob.find(raw) + delta
        blob[at] ^= 0x11
        path.write_bytes(bytes(blob))
        with pytest.raises(ec.CheckError):
            check(src, out, "nvfp4", "modelopt", samples=calib_tokens(src))
        blob[at] ^= 0x11
        path.write_bytes(bytes(blob))
    check(src, out, "nvfp4", "modelopt", samples=calib_tokens(src))


def test_messages_calibration_renders_chat_template(work, tmp_path):
    root, _, models = work
    calib = tmp_path / "chat.jsonl"
    calib.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": "hello!"}]}) +
                     "\n\n" + json.dumps({"text": "plain text sample"}) + "\n")
    p = quantize(models["bf16"], tmp_path / "q", "mxfp4", "compressed-tensors", "--calib",
                 str(calib))
    assert "2 samples" in p.stdout


def test_builtin_calibration_is_reported(work, tmp_path):
    root, _, models = work
    p = quantize(models["bf16"], tmp_path / "q", "mxfp4", "compressed-tensors",
                 "--calib-samples", "3")
    assert "built-in calibration text" in p.stdout and "3 samples" in p.stdout


@pytest.mark.parametrize("case", ["jsonl", "recipe", "resume", "not-minimax", "quantized",
                                  "fused-split", "starved", "not-empty"])
def test_bad_input_is_one_clear_line(work, tmp_path, case):
    root, calib, models = work
    src, out = models["bf16"], tmp_path / "out"
    args = ["--model", str(src), "--out", str(out), "--recipe", "nvfp4", "--quiet"]
    expected = {"jsonl": "bad.jsonl:2:", "recipe": "unknown recipe", "resume": "--resume",
                "not-minimax": "not a MiniMax-M2", "quantized": "already quantized",
                "fused-split": "fused group",
                "starved": "--starved-abort", "not-empty": "not empty"}[case]
    if case == "jsonl":
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"text": "fine"}\n{"text": broken\n')
        args += ["--calib", str(bad)]
    elif case == "recipe":
        args[args.index("nvfp4")] = "int3"
    elif case == "resume":
        args += ["--resume"]
    elif case == "not-minimax":
        other = tmp_path / "llama"
        other.mkdir()
        (other / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"],
                                                       "model_type": "llama"}))
        args[1] = str(other)
    elif case == "quantized":
        quantize(src, tmp_path / "q", "nvfp4", "modelopt", "--calib-samples", "2")
        args[1] = str(tmp_path / "q")
    elif case == "fused-split":
        args += ["--ignore", "model.layers.0.self_attn.k_proj"]
    elif case == "starved":
        args += ["--calib-samples", "1", "--max-seq", "2", "--starved-abort", "10"]
    elif case == "not-empty":
        out.mkdir()
        (out / "config.json").write_text("{}")
    p = run("quantize", *args, check=False)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], p.stderr
    assert not os.path.exists(out / "config.json") or case == "not-empty"


def _files(folder):
    return {n: (folder / n).read_bytes() for n in sorted(os.listdir(folder))}


def test_resume_after_sigkill_is_byte_identical(tmp_path):
    spec = cf.CheckpointSpec(hidden=128, layers=6, heads=4, kv_heads=2, head_dim=32,
                             rotary_dim=16, experts=16, top_k=4, intermediate=128, vocab=512,
                             seed=9, shards=2)
    src = cf.write_checkpoint(spec, str(tmp_path / "src"))
    args = ["--recipe", "mxfp4-16", "--format", "compressed-tensors", "--calib-samples", "32",
            "--max-seq", "128", "--checkpoint-every", "4", "--max-shard-size", "1",
            "--threads", "1", "--quiet"]
    ref = tmp_path / "ref"
    run("quantize", "--model", src, "--out", str(ref), *args)

    out = tmp_path / "out"
    work = out / ".m2fp4-work"
    # Kill points, each after the previous resume: inside a layer's calibration (an amax-only
    # checkpoint exists), after a few layers, and after output shards were written.
    stops = [lambda: (work / "partial.json").exists(),
             lambda: (work / "stats-3.json").exists(),
             lambda: (work / "out" / "model-00003-of-00004.safetensors").exists()]
    killed = 0
    for i, stop in enumerate(stops):
        cmd = [EXE, "quantize", "--model", src, "--out", str(out), *args] + (["--resume"] if i else [])
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while proc.poll() is None and time.time() < deadline and not stop():
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        if (out / "config.json").exists():
            break  # it finished before this kill point
        assert (work / "state.json").exists()
    assert killed >= 1
    if not (out / "config.json").exists():
        run("quantize", "--model", src, "--out", str(out), *args, "--resume")
    assert not work.exists()
    assert _files(out) == _files(ref)


def test_all_experts_calibrates_every_expert(work, tmp_path):
    """With 1 sample of 8 tokens and top-2 of 8 experts some experts see few or no tokens and
    --starved-abort stops the run; --all-experts sends all 8 tokens to every expert."""
    root, _, models = work
    args = ["--calib-samples", "1", "--max-seq", "8", "--starved-min-tokens", "8",
            "--starved-abort", "0"]
    p = quantize(models["bf16"], tmp_path / "a", "nvfp4", "modelopt", *args, check=False)
    assert p.returncode != 0 and "--starved-abort" in p.stderr
    p = quantize(models["bf16"], tmp_path / "b", "nvfp4", "modelopt", *args, "--all-experts")
    assert "starved experts 0 of 16" in p.stdout
