"""`m2fp4 eval` against the same statistics computed with numpy from `run --dump-logits`."""
import json
import os
import subprocess

import numpy as np

EXE = os.environ["M2FP4_EXE"]


def m2fp4(*args):
    p = subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def test_eval_matches_numpy_statistics(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    m2fp4("make-tiny", "--out", a, "--seed", "21")
    m2fp4("make-tiny", "--out", b, "--seed", "21", "--dtype", "fp8")  # same weights, FP8-rounded
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 512, size=40).tolist()
    ids = ",".join(map(str, tokens))
    (tmp_path / "ids.txt").write_text(ids)
    for d in (a, b):
        m2fp4("run", "--model", d, "--tokens", ids, "--max-tokens", "0",
              "--dump-logits", tmp_path / f"{d.name}.f32")
    lq = log_softmax(np.fromfile(tmp_path / "b.f32", dtype="<f4").reshape(40, 512))[:-1]
    lp = log_softmax(np.fromfile(tmp_path / "a.f32", dtype="<f4").reshape(40, 512))[:-1]
    nxt = np.array(tokens[1:])
    kld = (np.exp(lp) * (lp - lq)).sum(axis=1)
    want = {
        "ppl_model": float(np.exp(-lq[np.arange(39), nxt].mean())),
        "ppl_reference": float(np.exp(-lp[np.arange(39), nxt].mean())),
        "kld_mean": float(kld.mean()),
        "kld_max": float(kld.max()),
        "top1_agreement": float((lq.argmax(1) == lp.argmax(1)).mean()),
    }
    got = json.loads(m2fp4("eval", "--model", b, "--reference", a, "--tokens",
                           tmp_path / "ids.txt", "--ctx", "64", "--json"))
    assert got["tokens"] == 39
    assert want["kld_mean"] > 0  # FP8 rounding really changed the model
    for k, v in want.items():
        assert abs(got[k] - v) <= 1e-4 * max(1.0, abs(v)), (k, got[k], v)


def test_eval_of_a_model_against_itself_is_zero(tmp_path):
    a = tmp_path / "a"
    m2fp4("make-tiny", "--out", a, "--seed", "5")
    (tmp_path / "ids.txt").write_text(",".join(str(i) for i in range(100)))
    got = json.loads(m2fp4("eval", "--model", a, "--reference", a, "--tokens",
                           tmp_path / "ids.txt", "--ctx", "32", "--json"))
    # 100 tokens in chunks of 32 (32, 32, 32, 4): each chunk predicts all but its last token.
    assert got["tokens"] == 31 * 3 + 3
    assert got["kld_max"] == 0.0 and got["top1_agreement"] == 1.0
    assert got["ppl_model"] == got["ppl_reference"]
