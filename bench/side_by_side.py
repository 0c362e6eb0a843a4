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
    rows = []  # (round, pair, test, bw, load, m2fp4 t/s, llama t/s)
    sizes: dict[str, tuple[int, int]] = {}
    header = (f"{'round':>5} {'pair':<6} {'test':<6} {'bw GB/s':>8} {'load':>5} "
              f"{'m2fp4 t/s':>10} {'llama t/s':>10} {'ratio':>6}")
    print(header)
    for rnd in range(1, a.rounds + 1):
        for pair in pairs:
            folder, gguf, _ = PAIRS[pair]
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
        f"--threads {a.threads}"
        f"{' --llama-args ' + repr(a.llama_args) if a.llama_args else ''}`, "
        f"{started:%Y-%m-%d %H:%M} UTC, {cpu_name()} "
        f"({os.cpu_count()} CPUs), load average {rng([r[4] for r in rows])}.",
        "",
        "| pair | test | m2fp4 size | llama.cpp size | m2fp4 t/s median (range) "
        "| llama.cpp t/s median (range) | median ratio (range) | bw GB/s median (range) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for pair in pairs:
        for test in test_names:
            sel = [r for r in rows if r[1] == pair and r[2] == test]
            ratios = [r[5] / r[6] for r in sel]
            lines.append(
                f"| {PAIRS[pair][2]} | {test} | {sizes[pair][0] / 1e6:.0f} MB | "
                f"{sizes[pair][1] / 1e6:.0f} MB | "
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
