"""`--device cuda` for run and eval (issue 11). Without a usable GPU (or in a build without CUDA)
the command ends with one clear line and exit code 1; with one, its greedy tokens equal the CPU
path's. A bad device name is a usage error (exit 2)."""
import json
import os
import subprocess

import pytest

EXE = os.environ["M2FP4_EXE"]
NO_GPU = ("no CUDA device", "built without CUDA")


def m2fp4(*args):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("device") / "tiny"
    p = m2fp4("make-tiny", "--out", out, "--preset", "tiny", "--seed", "5")
    assert p.returncode == 0, p.stderr
    return out


def test_run_on_cuda_matches_cpu_or_says_why_not(tiny):
    args = ["run", "--model", tiny, "--tokens", "5,77,300,12", "--max-tokens", "8", "--ignore-eos"]
    cpu = m2fp4(*args)
    assert cpu.returncode == 0, cpu.stderr
    gpu = m2fp4(*args, "--device", "cuda")
    if gpu.returncode == 0:
        assert gpu.stdout == cpu.stdout
    else:
        assert gpu.returncode == 1
        assert gpu.stdout == ""
        lines = gpu.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("m2fp4 run: error: ")
        assert any(reason in lines[0] for reason in NO_GPU), lines[0]


def test_eval_on_cuda_says_why_not_or_runs(tiny, tmp_path):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(",".join(str(i) for i in range(1, 40)))
    p = m2fp4("eval", "--model", tiny, "--reference", tiny, "--tokens", tokens, "--ctx", "16",
              "--json", "--device", "cuda")
    if p.returncode != 0:
        assert p.returncode == 1
        assert any(reason in p.stderr for reason in NO_GPU), p.stderr
    else:
        # Same weights on both sides: only the GPU's summation order differs.
        result = json.loads(p.stdout)
        assert result["top1_agreement"] >= 0.9 and result["kld_mean"] < 1e-4


def test_unknown_device_is_a_usage_error(tiny):
    p = m2fp4("run", "--model", tiny, "--tokens", "1,2", "--device", "tpu")
    assert p.returncode == 2
    assert "--device" in p.stderr
