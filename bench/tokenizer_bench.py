#!/usr/bin/env python3
"""Tokenizer encode speed, one thread: m2fp4 vs Hugging Face `tokenizers`, same texts, same run.

    .venv/bin/python bench/tokenizer_bench.py --exe build/m2fp4 [--mb 2] [--repeat 3]

Corpora (from files on this machine, split into paragraph-sized documents of at most ~2 KB):
prose (license and copyright texts, Python's reference documentation prose), markdown (Node.js API docs,
m2fp4's specs), code (Python standard library, C++ standard library headers). Each tokenizer
folder under $M2FP4_SHARED_DIR/tokenizers (qwen3, deepseek-v3, gpt-oss) encodes each corpus:
- m2fp4: `m2fp4 tokenize --model DIR --file F --bench --repeat N`, which times the encode calls
  alone (no load, no I/O) and reports the best pass;
- HF: Tokenizer.encode per document in a loop, and encode_batch, with RAYON_NUM_THREADS=1 and
  TOKENIZERS_PARALLELISM=false; the faster of the two, best of N passes.
Both see the same documents with add_special_tokens=False. The ids are compared too (a
benchmark of a wrong tokenizer would be meaningless).
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def prose_sources():
    texts = [read(p) for p in sorted(glob.glob("/usr/share/common-licenses/*")) if os.path.isfile(p)]
    seen = set()
    for p in sorted(glob.glob("/usr/share/doc/*/copyright")):  # mostly license prose
        text = read(p)
        if text not in seen:
            seen.add(text)
            texts.append(text)
    topics = sorted(glob.glob("/usr/lib/python3*/pydoc_data/topics.py"))
    if topics:
        namespace = {}
        exec(compile(read(topics[0]), topics[0], "exec"), namespace)  # a dict of doc strings
        texts += list(namespace["topics"].values())
    return texts


def markdown_sources():
    paths = sorted(glob.glob("/usr/share/doc/nodejs/api/*.md")) + sorted(
        glob.glob(os.path.join(os.environ.get("M2FP4_SHARED_DIR", ROOT + "/../shared"), "specs/*.md")))
    return [read(p) for p in paths]


def code_sources():
    paths = sorted(glob.glob("/usr/lib/python3*/*.py")) + sorted(glob.glob("/usr/lib/python3*/*/*.py"))
    paths += sorted(glob.glob("/usr/include/c++/*/bits/*.h"))
    return [read(p) for p in paths]


def documents(sources, target_bytes, max_doc=2000):
    """Paragraph-sized documents (split at blank lines, at most ~max_doc chars)."""
    docs, size = [], 0
    for text in sources:
        current = ""
        for para in text.split("\n\n"):
            piece = para + "\n\n"
            if current and len(current) + len(piece) > max_doc:
                docs.append(current)
                size += len(current.encode("utf-8"))
                current = ""
                if size >= target_bytes:
                    return docs
            current += piece
        if current:
            docs.append(current)
            size += len(current.encode("utf-8"))
        if size >= target_bytes:
            break
    return docs


def bench_hf(tok, docs, repeat):
    best_loop = best_batch = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        ids = [tok.encode(d, add_special_tokens=False).ids for d in docs]
        best_loop = min(best_loop, time.perf_counter() - t0)
        t0 = time.perf_counter()
        tok.encode_batch(docs, add_special_tokens=False)
        best_batch = min(best_batch, time.perf_counter() - t0)
    return best_loop, best_batch, ids


def run_m2fp4(exe, model, path, extra):
    proc = subprocess.run([exe, "tokenize", "--model", model, "--file", path, *extra],
                          capture_output=True, check=True)
    return proc.stdout.decode("utf-8")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exe", default=os.environ.get("M2FP4_EXE", os.path.join(ROOT, "build/m2fp4")))
    ap.add_argument("--shared", default=os.environ.get("M2FP4_SHARED_DIR", os.path.join(ROOT, "../shared")))
    ap.add_argument("--mb", type=float, default=2.0, help="megabytes per corpus")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tokenizers", default="qwen3,deepseek-v3,gpt-oss")
    args = ap.parse_args()

    corpora = {"prose": prose_sources(), "markdown": markdown_sources(), "code": code_sources()}
    target = int(args.mb * 1e6)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for kind, sources in corpora.items():
            docs = documents(sources, target)
            path = os.path.join(tmp, kind + ".jsonl")
            with open(path, "w", encoding="utf-8") as f:
                for d in docs:
                    f.write(json.dumps(d, ensure_ascii=False) + "\n")
            files[kind] = (path, docs)
        for name in args.tokenizers.split(","):
            model = os.path.join(args.shared, "tokenizers", name)
            hf = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
            for kind, (path, docs) in files.items():
                nbytes = sum(len(d.encode("utf-8")) for d in docs)
                report = json.loads(run_m2fp4(args.exe, model, path, ["--bench", "--repeat", str(args.repeat)]))
                assert report["bytes"] == nbytes
                loop_s, batch_s, hf_ids = bench_hf(hf, docs, args.repeat)
                got = [json.loads(line)["ids"] for line in run_m2fp4(args.exe, model, path, ["--json"]).split("\n")[:-1]]
                same = got == hf_ids
                hf_best = min(loop_s, batch_s)
                rows.append((name, kind, nbytes / 1e6, len(docs), report["tokens"], report["mb_per_s"],
                             nbytes / 1e6 / loop_s, nbytes / 1e6 / batch_s,
                             report["mb_per_s"] / (nbytes / 1e6 / hf_best), same))
                r = rows[-1]
                print(f"{r[0]:12s} {r[1]:9s} {r[2]:5.2f} MB {r[3]:5d} docs {r[4]:8d} tokens  "
                      f"m2fp4 {r[5]:7.2f} MB/s  hf loop {r[6]:6.2f}  hf batch {r[7]:6.2f}  "
                      f"x{r[8]:5.2f}  ids {'identical' if same else 'DIFFER'}", flush=True)
    print("\n| tokenizer | corpus | MB | docs | tokens | m2fp4 MB/s | HF encode MB/s | HF encode_batch MB/s | speed-up vs faster HF | ids |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]} | {r[4]} | {r[5]:.2f} | {r[6]:.2f} | {r[7]:.2f} | "
              f"{r[8]:.2f}x | {'identical' if r[9] else 'DIFFER'} |")
    return 0 if all(r[9] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
