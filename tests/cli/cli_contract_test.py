"""The command-line contract (design.md): --help everywhere, a bad argument or a bad file ends
with one clear line on stderr and a non-zero exit (2 for usage), never a crash or a partial
output file left looking complete."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

EXE = os.environ["M2FP4_EXE"]
SHARED = Path(os.environ["M2FP4_SHARED_DIR"])
COMMANDS = ["make-tiny", "run", "inspect"]


def m2fp4(*args, **kw):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=120, **kw)


def one_line_error(proc):
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "error" in lines[0]
    return lines[0]


def test_top_level_help_lists_commands():
    p = m2fp4("--help")
    assert p.returncode == 0
    for c in COMMANDS:
        assert c in p.stdout


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help(cmd):
    p = m2fp4(cmd, "--help")
    assert p.returncode == 0, p.stderr
    assert "--" in p.stdout and p.stderr == ""


def test_unknown_command_is_a_usage_error():
    p = m2fp4("frobnicate")
    assert p.returncode == 2
    assert "frobnicate" in one_line_error(p)


@pytest.mark.parametrize(
    "args",
    [
        ["run"],  # --model missing
        ["run", "--model", "x", "--tokens", "1", "--bogus"],
        ["run", "--model", "x", "--tokens", "1", "--max-tokens", "-3"],
        ["run", "--model", "x", "--tokens", "1", "--load-mode", "swap"],
        ["make-tiny", "--out", "x", "--preset", "huge"],
        ["make-tiny", "--out", "x", "--dtype", "int3"],
        ["inspect"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(args):
    p = m2fp4(*args)
    assert p.returncode == 2, (p.returncode, p.stderr)
    one_line_error(p)


def test_bad_token_list_is_one_line(tmp_path):
    p = m2fp4("run", "--model", SHARED / "golden/tiny-bf16", "--tokens", "1,x,3")
    assert p.returncode != 0
    assert "'x'" in one_line_error(p)


def test_missing_model_folder_is_one_line(tmp_path):
    p = m2fp4("run", "--model", tmp_path / "nope", "--tokens", "1")
    assert p.returncode != 0
    one_line_error(p)


def test_truncated_checkpoint_leaves_no_dump(tmp_path):
    src = SHARED / "golden/tiny-bf16"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((src / "config.json").read_text())
    data = (src / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    dump = tmp_path / "logits.f32"
    p = m2fp4("run", "--model", bad, "--tokens", "1,2", "--dump-logits", dump)
    assert p.returncode != 0
    one_line_error(p)
    assert not dump.exists()
    assert not any(tmp_path.glob("logits.f32*"))


def test_prompt_longer_than_context_is_refused(tmp_path):
    p = m2fp4("run", "--model", SHARED / "golden/tiny-bf16", "--tokens", "1,2,3,4,5",
              "--ctx-size", "4")
    assert p.returncode != 0
    assert "context" in one_line_error(p)


def test_out_of_vocabulary_token_is_refused():
    p = m2fp4("run", "--model", SHARED / "golden/tiny-bf16", "--tokens", "1,512")
    assert p.returncode != 0
    assert "512" in one_line_error(p)


def test_dump_logits_matches_golden(tmp_path):
    for name in ["tiny-bf16", "tiny-fp8"]:
        d = SHARED / "golden" / name
        dump = tmp_path / f"{name}.f32"
        tokens = (d / "tokens.txt").read_text().strip()
        # The reference is float64 math on unrounded activations: f32 activations.
        p = m2fp4("run", "--model", d, "--tokens", tokens, "--max-tokens", "0",
                  "--dump-logits", dump, "--bf16-activations", "f32")
        assert p.returncode == 0, p.stderr
        got = np.fromfile(dump, dtype="<f4")
        want = np.fromfile(d / "logits.f32", dtype="<f4")
        assert got.shape == want.shape
        assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-4
        assert (got.reshape(-1, 512).argmax(1) == want.reshape(-1, 512).argmax(1)).all()


def test_make_tiny_then_inspect_and_run(tmp_path):
    out = tmp_path / "tiny"
    p = m2fp4("make-tiny", "--out", out, "--seed", "3", "--dtype", "fp8")
    assert p.returncode == 0, p.stderr
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["MiniMaxM2ForCausalLM"]
    assert cfg["quantization_config"]["quant_method"] == "fp8"
    p = m2fp4("inspect", "--model", out)
    assert p.returncode == 0, p.stderr
    assert "F8_E4M3" in p.stdout and "experts" in p.stdout
    # Linear layers by the format the model loads them in, with bits per weight: E4M3 codes plus
    # one f32 scale per 128x128 block (a 64x32 expert matrix has one block: 8 + 32/2048 bits).
    rows = {tuple(l.split()[:2]): l.split() for l in p.stdout.splitlines() if l.split()[:1] in
            (["experts"], ["attention"], ["router"])}
    assert rows[("experts", "fp8-block128")][-3] == "8.02"
    assert rows[("router", "f32")][-3] == "32.00"
    p = m2fp4("run", "--model", out, "--tokens", "1,2,3", "--max-tokens", "5")
    assert p.returncode == 0, p.stderr
    ids = [int(x) for x in p.stdout.strip().splitlines()[-1].split(",")]
    assert len(ids) == 5 and all(0 <= i < 512 for i in ids)
    # Greedy generation is deterministic; sampling with a seed is reproducible.
    again = m2fp4("run", "--model", out, "--tokens", "1,2,3", "--max-tokens", "5")
    assert again.stdout == p.stdout
    s1 = m2fp4("run", "--model", out, "--tokens", "1,2,3", "--max-tokens", "8",
               "--temperature", "1.0", "--seed", "11")
    s2 = m2fp4("run", "--model", out, "--tokens", "1,2,3", "--max-tokens", "8",
               "--temperature", "1.0", "--seed", "11")
    assert s1.returncode == 0 and s1.stdout == s2.stdout


def test_sharded_checkpoint_runs_like_single_file(tmp_path):
    one, shards = tmp_path / "one", tmp_path / "shards"
    assert m2fp4("make-tiny", "--out", one, "--seed", "4").returncode == 0
    assert m2fp4("make-tiny", "--out", shards, "--seed", "4", "--max-shard-size", "0.1").returncode == 0
    index = json.loads((shards / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    outs = []
    for d in (one, shards):
        dump = tmp_path / (d.name + ".f32")
        p = m2fp4("run", "--model", d, "--tokens", "9,8,7", "--max-tokens", "0", "--dump-logits", dump)
        assert p.returncode == 0, p.stderr
        outs.append(dump.read_bytes())
    assert outs[0] == outs[1]
