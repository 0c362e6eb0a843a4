"""`m2fp4 bench` (issue 10): llama-bench's interface on the model. Checks the shape of the markdown
table and of the JSON (one row per model x threads x depth x test, tok/s consistent with the
recorded times), and that bad arguments are one-line usage errors. No speed is asserted."""
import json
import os
import subprocess

import pytest

EXE = os.environ["M2FP4_EXE"]


def m2fp4(*args):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny"
    p = m2fp4("make-tiny", "--out", out, "--preset", "tiny", "--seed", "3")
    assert p.returncode == 0, p.stderr
    return out


def test_markdown_table_has_one_row_per_test(tiny):
    p = m2fp4("bench", "-m", tiny, "-p", "16", "-n", "4", "-d", "0,8", "-b", "1,3", "-t", "1",
              "-r", "2")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[0] == "| model | size | params | backend | threads | test | t/s | t/s per seq |"
    assert set(lines[1].replace("|", "").split()) <= {"---", "---:"}
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    # Per depth: pp16, tg4, tg4 with 3 sequences.
    assert [r[5] for r in rows] == ["pp16", "tg4", "tg4 x3 seqs",
                                    "pp16 @ d8", "tg4 @ d8", "tg4 x3 seqs @ d8"]
    for r in rows:
        assert len(r) == 8
        assert r[0] == "tiny" and r[3] == "CPU" and r[4] == "1"
        mean, std = (float(x) for x in r[6].split("±"))
        assert mean > 0 and std >= 0
        if r[5].startswith("tg"):
            seqs = 3 if "x3" in r[5] else 1
            per_seq = float(r[7].split("±")[0])
            assert per_seq == pytest.approx(mean / seqs, rel=1e-3, abs=0.01)
        else:
            assert r[7] == ""


def test_json_rows_match_their_samples(tiny):
    p = m2fp4("bench", "--model", tiny, "--model", tiny, "-p", "8", "-n", "3", "-b", "2",
              "-t", "1,2", "-r", "3", "--json")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert len(rows) == 2 * 2 * 2  # models x threads x (pp, tg)
    for r in rows:
        assert r["backends"] == "CPU" and r["model"] == "tiny"
        assert r["model_size"] > 0 and r["model_n_params"] > 0
        assert r["n_threads"] in (1, 2)
        assert len(r["samples_ts"]) == len(r["samples_ns"]) == 3
        tokens = r["n_prompt"] if r["n_prompt"] else r["n_gen"] * r["n_seqs"]
        for ts, ns in zip(r["samples_ts"], r["samples_ns"]):
            assert ts == pytest.approx(tokens / (ns * 1e-9), rel=1e-3)
        assert r["avg_ts"] == pytest.approx(sum(r["samples_ts"]) / 3)
        assert r["avg_ts_per_seq"] == pytest.approx(r["avg_ts"] / r["n_seqs"])
        assert r["test"] == ("pp8" if r["n_prompt"] else "tg3 x2 seqs")
    # The parameter count is the architecture's: tiny preset (hidden 64, 2 layers, 8 experts of
    # 32, vocab 512, 4/2 heads of 16), counted by hand.
    h, qw, kw, e, i, v = 64, 64, 32, 8, 32, 512
    per_layer = 2 * h + 2 * qw * h + 2 * kw * h + qw + kw + e * h + e + 3 * e * i * h
    assert rows[0]["model_n_params"] == 2 * v * h + 2 * per_layer + h


@pytest.mark.parametrize("args", [
    ["bench"],  # --model missing
    ["bench", "-m", "x", "-p", "0", "-n", "0"],
    ["bench", "-m", "x", "-b", "0"],
    ["bench", "-m", "x", "-p", "-5"],
    ["bench", "-m", "x", "-r", "0"],
    ["bench", "-m", "x", "--bogus"],
])
def test_bad_arguments_exit_2_with_one_line(args):
    p = m2fp4(*args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0]
    assert p.stdout == ""


def test_missing_model_and_too_deep_context_are_one_line(tiny, tmp_path):
    p = m2fp4("bench", "-m", tmp_path / "nope")
    assert p.returncode == 1 and p.stdout == ""
    assert "nope" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = m2fp4("bench", "-m", tiny, "-p", "4096", "-n", "0", "-d", "4096")
    assert p.returncode == 1
    assert "8192" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def safetensors_bytes(folder):
    """Bytes of each tensor of a checkpoint folder, from the safetensors headers."""
    import struct
    sizes = {}
    for f in sorted(os.listdir(folder)):
        if not f.endswith(".safetensors"):
            continue
        with open(os.path.join(folder, f), "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(n))
        for name, t in header.items():
            if name != "__metadata__":
                sizes[name] = t["data_offsets"][1] - t["data_offsets"][0]
    return sizes


def test_profile_counts_the_weight_bytes_each_step_streams(tiny):
    # Tiny preset: 2 layers, 8 experts, top-2. Every step streams the attention, router and
    # lm_head matrices once, and each expert that any token of the step is routed to once.
    layers, n_experts, top_k = 2, 8, 2
    sizes = safetensors_bytes(tiny)
    dense = sizes["lm_head.weight"] + sum(
        sizes[f"model.layers.{l}.{m}.weight"] for l in range(layers)
        for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                  "block_sparse_moe.gate"))
    expert = sum(sizes[f"model.layers.0.block_sparse_moe.experts.0.{w}.weight"]
                 for w in ("w1", "w2", "w3"))
    p = m2fp4("bench", "-m", tiny, "-p", "0", "-n", "3", "-b", "1,3", "-t", "2", "-r", "2",
              "--profile", "--json")
    assert p.returncode == 0, p.stderr
    one, three = json.loads(p.stdout)
    assert one["dense_weight_bytes_per_step"] == dense
    assert one["experts_per_layer"] == top_k
    assert one["weight_bytes_per_step"] == dense + layers * top_k * expert
    assert one["bandwidth_bound_vs_1_seq"] == pytest.approx(1.0)
    per_layer = three["experts_per_layer"]
    assert top_k <= per_layer <= min(n_experts, 3 * top_k)
    bytes3 = three["weight_bytes_per_step"]
    assert bytes3 == pytest.approx(dense + layers * per_layer * expert)
    assert three["bandwidth_bound_vs_1_seq"] == pytest.approx(
        3 * one["weight_bytes_per_step"] / bytes3)
    for r in (one, three):
        assert set(r["phase_ms_per_step"]) >= {"attention", "lm_head", "router"}
        assert all(v >= 0 for v in r["phase_ms_per_step"].values())
    # The markdown form: the speed table, then one profile row per tg test.
    p = m2fp4("bench", "-m", tiny, "-p", "4", "-n", "2", "-b", "1,3", "-t", "1", "-r", "1",
              "--profile")
    assert p.returncode == 0, p.stderr
    tables = p.stdout.strip().split("\n\n")
    assert len(tables) == 2
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in tables[1].splitlines()[2:]]
    assert [r[1] for r in rows] == ["tg2", "tg2 x3 seqs"]
    assert rows[0][-2] == "1.00x" and rows[0][-1] == "1.00x"
