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
