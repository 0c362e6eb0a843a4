#!/usr/bin/env python3
"""Checks that llama.cpp computes the same model from a GGUF as m2fp4 from the checkpoint it was
converted from (bench/hf_to_gguf.py), before any speed ratio between them is trusted.

    verify_gguf.py --m2fp4 EXE --llama-bin DIR --checkpoint CKPT --gguf FILE.gguf

1. Tokenizer: llama-tokenize and `m2fp4 tokenize` on the same text give the same ids.
2. Greedy decoding: llama-server /completion (temperature 0, token ids in, n_probs = 5 raw
   log-probabilities per step) against `m2fp4 run --tokens`.
3. Teacher-forced log-probabilities: m2fp4 re-runs prompt + llama.cpp's generated tokens with
   --dump-logits; at every step llama.cpp's top-5 log-probs are compared with m2fp4's
   log-softmax of the same token ids, and the top-1 tokens are compared.
A wrong conversion (tensor layout, rope style, norm, routing) moves log-probs by whole nats and
changes the top-1 token at most steps; BF16 rounding differences (llama.cpp rounds activations
to BF16 before its BF16 dot products) stay at a few hundredths.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

TEXT = ("The quick brown fox jumps over the lazy dog. MiniMax-M2 is a Mixture-of-Experts model "
        "with 256 experts, 8 of which are active for each token; 4-bit weights make it fast.")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--m2fp4", required=True)
    ap.add_argument("--llama-bin", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--prompt-tokens", type=int, default=24)
    ap.add_argument("--gen", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.checkpoint, "config.json")))
    vocab = int(cfg["vocab_size"])
    ok = True

    # 1. Tokenizer parity.
    lt = subprocess.run([os.path.join(a.llama_bin, "llama-tokenize"), "-m", a.gguf, "-p", TEXT,
                         "--ids", "--log-disable"], capture_output=True, text=True)
    llama_ids = json.loads(lt.stdout.strip().splitlines()[-1]) if lt.returncode == 0 else None
    mt = subprocess.run([a.m2fp4, "tokenize", "--model", a.checkpoint, "--json", TEXT],
                        capture_output=True, text=True, check=True)
    m2_ids = json.loads(mt.stdout)["ids"]
    same_tok = llama_ids == m2_ids
    print(f"tokenizer: llama.cpp {len(llama_ids or [])} ids, m2fp4 {len(m2_ids)} ids: "
          f"{'identical' if same_tok else 'DIFFERENT'}")
    ok &= same_tok

    # The prompt: the text's ids (shared by both tokenizers), cut or padded to a fixed length.
    prompt = (m2_ids * 4)[: a.prompt_tokens]

    # 2. llama.cpp greedy with raw top-5 log-probs per step, through llama-server on 127.0.0.1.
    port = free_port()
    server = subprocess.Popen(
        [os.path.join(a.llama_bin, "llama-server"), "-m", a.gguf, "--host", "127.0.0.1",
         "--port", str(port), "-t", str(a.threads), "-c", str(a.prompt_tokens + a.gen + 16),
         "-np", "1", "-lm", "none", "--no-warmup"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except Exception:
                if server.poll() is not None:
                    sys.exit("verify_gguf: llama-server exited:\n" + server.stderr.read()[-3000:])
                time.sleep(0.5)
        res = post(f"http://127.0.0.1:{port}/completion",
                   {"prompt": prompt, "n_predict": a.gen, "temperature": 0.0, "n_probs": 5,
                    "return_tokens": True, "cache_prompt": False, "ignore_eos": True})
    finally:
        server.terminate()
        server.wait(timeout=60)
    llama_gen = res["tokens"]
    steps = res["completion_probabilities"]

    # m2fp4 greedy.
    run = subprocess.run([a.m2fp4, "run", "--model", a.checkpoint, "--tokens",
                          ",".join(map(str, prompt)), "--max-tokens", str(a.gen), "--ignore-eos",
                          "--threads", str(a.threads)], capture_output=True, text=True, check=True)
    m2_gen = [int(x) for x in run.stdout.strip().split(",")]
    agree = 0
    while agree < min(len(m2_gen), len(llama_gen)) and m2_gen[agree] == llama_gen[agree]:
        agree += 1
    print(f"greedy: {agree} of {a.gen} generated tokens identical before the first difference")

    # 3. Teacher-forced: m2fp4's log-probs on llama.cpp's sequence.
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "logits.f32")
        seq = prompt + llama_gen[:-1]
        subprocess.run([a.m2fp4, "run", "--model", a.checkpoint, "--tokens",
                        ",".join(map(str, seq)), "--max-tokens", "0", "--dump-logits", dump,
                        "--threads", str(a.threads)], capture_output=True, text=True, check=True)
        logits = np.fromfile(dump, dtype=np.float32).reshape(len(seq), vocab).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    # The server leaves out the step of a token that ends inside a UTF-8 character (its text is
    # sent with the next one): match each step to its generated position by token id.
    diffs, top1, k = [], 0, 0
    for step in steps:
        while llama_gen[k] != step["id"]:
            k += 1
        row = logp[len(prompt) - 1 + k]
        k += 1
        for t in step["top_logprobs"]:
            diffs.append(abs(row[t["id"]] - t["logprob"]))
        top1 += int(np.argmax(row)) == step["top_logprobs"][0]["id"]
    diffs = np.array(diffs)
    print(f"teacher-forced over {len(steps)} steps: top-1 token agrees at {top1}/{len(steps)}; "
          f"|log-prob difference| of llama.cpp's top-5: median {np.median(diffs):.4f}, "
          f"max {diffs.max():.4f} nats")
    good = top1 >= 0.9 * len(steps) and np.median(diffs) < 0.05 and diffs.max() < 0.5
    ok &= bool(good)
    print("RESULT:", "PASS (same model)" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
