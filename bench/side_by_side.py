#!/usr/bin/env python3
"""Rounds of bench/side_by_side.sh: m2fp4 bench and llama-bench on each pair of formats, one
after the other (which goes first alternates by round), the bandwidth probe before each pair,
the load average beside it; per-round figures, then medians and median ratios.

Run through bench/side_by_side.sh, which prepares the checkpoints and GGUFs."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

PAIRS = {  # name: (m2fp4 checkpoint folder, GGUF file, label)
    "bf16": ("bf16", "bf16.gguf", "BF16 vs BF16"),
    "mxfp4": ("mxfp4", "mxfp4_moe.gguf", "m2fp4 mxfp4 vs MXFP4_MOE"),
    "nvfp4": ("nvfp4", "q4_0.gguf", "m2fp4 nvfp4 vs Q4_0"),
    "iq4nl": ("mxfp4-16", "iq4_nl.gguf", "m2fp4 mxfp4-16 (IQ4_NL x16) vs IQ4_NL"),
}


def m2fp4_bytes_per_token(folder: str) -> int:
    """Weight bytes one decode token reads from an m2fp4 checkpoint, from its safetensors
    headers: every tensor once, the embedding's one row, experts' tensors times top_k / experts."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    frac = cfg["num_experts_per_tok"] / cfg["num_local_experts"]
    total = 0.0
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".safetensors"):
            continue
        with open(os.path.join(folder, name), "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        for tensor, info in header.items():
            if tensor == "__metadata__":
                continue
            nbytes = info["data_offsets"][1] - info["data_offsets"][0]
            if tensor == "model.embed_tokens.weight":
                total += nbytes / cfg["vocab_size"]
            elif ".experts." in tensor:
                total += nbytes * frac
            else:
                total += nbytes
    return int(total)


def gguf_bytes_per_token(path: str, top_k: int, n_experts: int, vocab: int) -> int:
    """The same count for a GGUF (llama.cpp's stacked *_exps tensors hold every expert)."""
    import gguf  # the package bench/hf_to_gguf.py writes with
    total = 0.0
    for t in gguf.GGUFReader(path).tensors:
        nbytes = int(t.n_bytes)
        if t.name == "token_embd.weight":
            total += nbytes / vocab
        elif "_exps" in t.name:
            total += nbytes * top_k / n_experts
        else:
            total += nbytes
    return int(total)


def head_type(path: str) -> str:
    """The GGUF type of output.weight (llama-quantize's choice for the lm_head)."""
    import gguf
    for t in gguf.GGUFReader(path).tensors:
        if t.name == "output.weight":
            return t.tensor_type.name
    return "tied"


def run_json(cmd: list[str]) -> list[dict]:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"side_by_side: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return json.loads(p.stdout)


def bandwidth(probe: str, threads: int) -> float:
    p = subprocess.run([probe, "--threads", str(threads)], capture_output=True, text=True,
                       check=True)
    return float(p.stdout.strip())


def load_average() -> float:
    return os.getloadavg()[0]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exe", required=True)
    ap.add_argument("--probe", required=True)
    ap.add_argument("--llama-bench", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairs", default="bf16,mxfp4,nvfp4,iq4nl")
    ap.add_argument("--tests", default="tg,pp")
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--markdown")
    ap.add_argument("--llama-args", default="")
    ap.add_argument("--lm-head", default="fp8",
                    help="lm_head of the m2fp4 4-bit checkpoints: fp8 (folders RECIPE-lmfp8) "
                         "or keep (folders RECIPE, the model dtype)")
    a = ap.parse_args()
    pairs = a.pairs.split(",")
    tests = a.tests.split(",")
    n_prompt = a.p if "pp" in tests else 0
    n_gen = a.n if "tg" in tests else 0
    test_names = [t for t in (f"tg{a.n}" if n_gen else None, f"pp{a.p}" if n_prompt else None) if t]

    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"# side by side: {a.dir}, {a.threads} threads, {a.rounds} rounds, "
          f"{started:%Y-%m-%d %H:%M} UTC, {cpu_name()}, {os.cpu_count()} CPUs")
    print("# m2fp4: bench -r 1 (after a warmup run); llama.cpp: llama-bench -r 1 -lm none "
          f"{a.llama_args} (after its warmup run)")
    with open(os.path.join(a.dir, "bf16", "config.json")) as f:
        cfg = json.load(f)

    def folder_of(pair: str) -> str:
        folder = PAIRS[pair][0]
        return folder + "-lmfp8" if pair != "bf16" and a.lm_head == "fp8" else folder

    # What each side reads per decode token, and its lm_head.
    per_token: dict[str, tuple[int, int, str, str]] = {}
    for pair in pairs:
        folder, gguf_file = folder_of(pair), os.path.join(a.dir, "gguf", PAIRS[pair][1])
        m_head = "BF16" if pair == "bf16" or a.lm_head != "fp8" else "FP8 128x128 (8.25 bpw)"
        per_token[pair] = (
            m2fp4_bytes_per_token(os.path.join(a.dir, folder)),
            gguf_bytes_per_token(gguf_file, cfg["num_experts_per_tok"], cfg["num_local_experts"],
                                 cfg["vocab_size"]),
            m_head, head_type(gguf_file))
        m_b, l_b, m_h, l_h = per_token[pair]
        print(f"# {pair}: m2fp4 {folder} reads {m_b / 1e6:.1f} MB/token (lm_head {m_h}); "
              f"llama.cpp {PAIRS[pair][1]} reads {l_b / 1e6:.1f} MB/token (output.weight {l_h})")
    rows = []  # (round, pair, test, bw, load, m2fp4 t/s, llama t/s)
    sizes: dict[str, tuple[int, int]] = {}
    header = (f"{'round':>5} {'pair':<6} {'test':<6} {'bw GB/s':>8} {'load':>5} "
              f"{'m2fp4 t/s':>10} {'llama t/s':>10} {'ratio':>6}")
    print(header)
    for rnd in range(1, a.rounds + 1):
        for pair in pairs:
            folder, gguf, _ = PAIRS[pair]
            folder = folder_of(pair)
            m_cmd = [a.exe, "bench", "-m", os.path.join(a.dir, folder), "-p", str(n_prompt),
                     "-n", str(n_gen), "-t", str(a.threads), "-r", "1", "--json"]
            l_cmd = [a.llama_bench, "-m", os.path.join(a.dir, "gguf", gguf), "-p", str(n_prompt),
                     "-n", str(n_gen), "-t", str(a.threads), "-r", "1", "-lm", "none",
                     "-o", "json", *a.llama_args.split()]
            bw = bandwidth(a.probe, a.threads)
            load = load_average()
            if rnd % 2:
                m_res, l_res = run_json(m_cmd), run_json(l_cmd)
            else:
                l_res, m_res = run_json(l_cmd), run_json(m_cmd)
            sizes[pair] = (m_res[0]["model_size"], l_res[0]["model_size"])
            for test in test_names:
                is_pp = test.startswith("pp")
                m_ts = next(r["avg_ts"] for r in m_res if (r["n_prompt"] > 0) == is_pp)
                l_ts = next(r["avg_ts"] for r in l_res if (r["n_prompt"] > 0) == is_pp)
                rows.append((rnd, pair, test, bw, load, m_ts, l_ts))
                print(f"{rnd:>5} {pair:<6} {test:<6} {bw:>8.1f} {load:>5.1f} {m_ts:>10.1f} "
                      f"{l_ts:>10.1f} {m_ts / l_ts:>6.2f}", flush=True)

    def rng(xs):
        return f"{min(xs):.1f}-{max(xs):.1f}"

    lines = [
        f"Bench: `bench/side_by_side.sh --preset {os.path.basename(a.dir)} --rounds {a.rounds} "
        f"--threads {a.threads} --lm-head {a.lm_head}"
        f"{' --llama-args ' + repr(a.llama_args) if a.llama_args else ''}`, "
        f"{started:%Y-%m-%d %H:%M} UTC, {cpu_name()} "
        f"({os.cpu_count()} CPUs), load average {rng([r[4] for r in rows])}.",
        "",
        "| pair | test | m2fp4 size | llama.cpp size | m2fp4 MB/token (lm_head) "
        "| llama.cpp MB/token (output) | m2fp4 t/s median (range) "
        "| llama.cpp t/s median (range) | median ratio (range) | bw GB/s median (range) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for pair in pairs:
        for test in test_names:
            sel = [r for r in rows if r[1] == pair and r[2] == test]
            ratios = [r[5] / r[6] for r in sel]
            lines.append(
                f"| {PAIRS[pair][2]} | {test} | {sizes[pair][0] / 1e6:.0f} MB | "
                f"{sizes[pair][1] / 1e6:.0f} MB | "
                f"{per_token[pair][0] / 1e6:.1f} ({per_token[pair][2]}) | "
                f"{per_token[pair][1] / 1e6:.1f} ({per_token[pair][3]}) | "
                f"{statistics.median(r[5] for r in sel):.1f} ({rng([r[5] for r in sel])}) | "
                f"{statistics.median(r[6] for r in sel):.1f} ({rng([r[6] for r in sel])}) | "
                f"**{statistics.median(ratios):.2f}** ({min(ratios):.2f}-{max(ratios):.2f}) | "
                f"{statistics.median(r[3] for r in sel):.1f} ({rng([r[3] for r in sel])}) |")
    print()
    print("\n".join(lines))
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write("\n".join(lines) + "\n\nPer round:\n\n```\n" + header + "\n")
            for r in rows:
                f.write(f"{r[0]:>5} {r[1]:<6} {r[2]:<6} {r[3]:>8.1f} {r[4]:>5.1f} {r[5]:>10.1f} "
                        f"{r[6]:>10.1f} {r[5] / r[6]:>6.2f}\n")
            f.write("```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
