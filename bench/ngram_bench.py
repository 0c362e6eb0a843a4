"""ngram speculation on code-editing requests: starts `m2fp4 serve` on a model twice at once
(without, and with --speculative-config ngram), sends the same greedy code-editing chats to both,
alternating (a source file in the prompt, "rename x to y" / "add a parameter" / ..., reply = the
whole edited file), and prints decode tok/s, the speed-up, the acceptance rate from /metrics and
whether the greedy outputs are identical (speculation must not change them).

    .venv/bin/python bench/ngram_bench.py --model DIR [--exe build/m2fp4] [--k 4]
        [--requests 4] [--rounds 1] [--max-tokens 128] [--threads 2] [--set code|repeat]
        [--nice 10] [--show]

Decode tok/s of a request = (completion tokens - 1) / (last token time - first token time), over
the streamed chunks; the totals add tokens and decode seconds of all requests. `--set repeat`
sends completions whose prompt is a file written out three times and started a fourth time, the
most favourable case for prompt lookup. A random-weight checkpoint (make-tiny presets) does not
copy its prompt as a trained model would (`--show` prints what it writes: mostly unused special
tokens, often one token or a short cycle repeated): its drafts match where its own greedy output
loops, so its acceptance rate says little about a trained model editing code.
"""
import argparse
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import openai

NAMES = ["inventory", "billing", "scheduler", "parser", "metrics", "cache"]


def source_file(i):
    """A deterministic Python module of ~40 lines (the file the edit is about)."""
    name = NAMES[i % len(NAMES)]
    lines = [f'"""The {name} module: small helpers used by the service."""', "import math", "",
             "", f"class {name.capitalize()}Store:",
             "    def __init__(self, capacity):", "        self.capacity = capacity",
             "        self.items = {}", "        self.total = 0", ""]
    for k in range(4):
        lines += [f"    def process_{k}(self, key, value):",
                  f"        \"\"\"Step {k}: stores value under key and updates the total.\"\"\"",
                  "        if len(self.items) >= self.capacity:",
                  "            raise ValueError('the store is full')",
                  f"        self.items[key] = value * {k + 2}",
                  f"        self.total = self.total + value * {k + 2}",
                  "        return math.sqrt(abs(self.total))", ""]
    lines += ["", f"def summarize(store):", "    total = 0",
              "    for key, value in sorted(store.items.items()):",
              "        total += value", "    return {'count': len(store.items), 'total': total}"]
    return "\n".join(lines) + "\n"


EDITS = ["Rename the attribute `total` to `running_total` everywhere.",
         "Add a parameter `verbose=False` to every `process_*` method and print the key when it is "
         "true.",
         "Rename the class to `Store` and update every use of it.",
         "Replace `math.sqrt(abs(self.total))` with `self.total` in every method.",
         "Add a type annotation `-> dict` to `summarize`.",
         "Change the error message to 'capacity reached'."]


def requests_for(kind, count):
    out = []
    for i in range(count):
        src = source_file(i)
        if kind == "code":
            out.append({"messages": [
                {"role": "system",
                 "content": "You are a careful code editor. Reply with the complete edited file "
                            "only, no explanation."},
                {"role": "user",
                 "content": f"Here is `{NAMES[i % len(NAMES)]}.py`:\n```python\n{src}```\n\n"
                            f"{EDITS[i % len(EDITS)]} Reply with the whole updated file."}]})
        else:
            head = "\n".join(src.splitlines()[:6])
            out.append({"prompt": src + "\n# again\n" + src + "\n# again\n" + src +
                        "\n# again\n" + head + "\n"})
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(base):
    with urllib.request.urlopen(base + "/metrics", timeout=30) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, value = line.rsplit(" ", 1)
        name = key.split("{", 1)[0]
        values[name] = values.get(name, 0.0) + float(value)
    return values


class Server:
    def __init__(self, args, spec):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="ngram-bench-", suffix=".log", delete=False)
        cmd = ["nice", "-n", str(args.nice), args.exe, "serve", args.model, "--port",
               str(self.port), "--host", "127.0.0.1", "--threads", str(args.threads),
               "--served-model-name", "bench", "--max-model-len", str(args.max_model_len),
               "--kv-cache-memory", "1G"]
        if spec:
            cmd += ["--speculative-config",
                    '{"method":"ngram","num_speculative_tokens":%d,"prompt_lookup_min":%d,'
                    '"prompt_lookup_max":%d}' % (args.k, args.lookup_min, args.lookup_max)]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 600
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"server exited: {open(self.log.name).read()[-2000:]}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        sys.exit("server never became healthy")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        os.unlink(self.log.name)


def run_one(client, body, max_tokens):
    """Streams one greedy request; returns (text, completion tokens, ttft s, decode s)."""
    start = time.perf_counter()
    common = dict(model="bench", max_tokens=max_tokens, temperature=0, stream=True,
                  stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    if "messages" in body:
        stream = client.chat.completions.create(messages=body["messages"], **common)
    else:
        stream = client.completions.create(prompt=body["prompt"], **common)
    first = last = None
    text, tokens = "", 0
    for chunk in stream:
        if chunk.usage is not None and not chunk.choices:
            tokens = chunk.usage.completion_tokens
            continue
        c = chunk.choices[0]
        piece = c.text if hasattr(c, "text") else (
            (c.delta.content or "") + ((c.delta.model_extra or {}).get("reasoning_content") or ""))
        if piece:
            now = time.perf_counter()
            first = first or now
            last = now
            text += piece
    return text, tokens, (first or start) - start, (last or start) - (first or start)


def summarize(results, before, after, cmd):
    def delta(name):
        return after.get(name, 0) - before.get(name, 0)
    tokens = sum(r[1] for r in results)
    decode_s = sum(r[3] for r in results)
    decode_tokens = sum(max(r[1] - 1, 0) for r in results)
    return {"texts": [r[0] for r in results], "tokens": tokens,
            "decode_tps": decode_tokens / decode_s if decode_s > 0 else 0.0,
            "ttft_ms": 1000 * sum(r[2] for r in results) / len(results),
            "drafted": int(delta("vllm:spec_decode_num_draft_tokens_total")),
            "accepted": int(delta("vllm:spec_decode_num_accepted_tokens_total")), "cmd": cmd}


def run_both(args, reqs):
    """Both servers up at once (idle one sleeps); requests alternate plain / ngram so that the
    host's load drifts over both alike."""
    servers = []
    try:
        servers = [Server(args, False), Server(args, True)]
        clients = [openai.OpenAI(base_url=s.base + "/v1", api_key="x", max_retries=0,
                                 timeout=1800) for s in servers]
        for c in clients:
            run_one(c, reqs[0], 4)  # warm-up (weights paged in)
        before = [metrics(s.base) for s in servers]
        results = [[], []]
        for _ in range(args.rounds):
            for r in reqs:
                for k, c in enumerate(clients):
                    results[k].append(run_one(c, r, args.max_tokens))
        after = [metrics(s.base) for s in servers]
        return [summarize(results[k], before[k], after[k], servers[k].cmd) for k in range(2)]
    finally:
        for s in servers:
            s.stop()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--exe", default=os.path.join(here, "..", "build", "m2fp4"))
    ap.add_argument("--k", type=int, default=4, help="num_speculative_tokens")
    ap.add_argument("--lookup-min", type=int, default=2)
    ap.add_argument("--lookup-max", type=int, default=4)
    ap.add_argument("--requests", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1, help="times the request set is sent")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--max-model-len", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", choices=["code", "repeat"], default="code")
    ap.add_argument("--nice", type=int, default=10)
    ap.add_argument("--show", action="store_true", help="print the start of each output")
    args = ap.parse_args()

    reqs = requests_for(args.set, args.requests)
    load0 = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    base, spec = run_both(args, reqs)
    load1 = os.getloadavg()
    same = sum(a == b for a, b in zip(base["texts"], spec["texts"]))
    print(f"ngram_bench: {args.model}, set {args.set}, {args.requests} requests x "
          f"{args.rounds} rounds x {args.max_tokens} tokens (greedy, one at a time, plain and "
          f"ngram alternating), {args.threads} threads, "
          f"K={args.k}, lookup {args.lookup_min}-{args.lookup_max}")
    print(f"{started}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load0[0]:.1f} before, {load1[0]:.1f} after")
    print()
    print("| server | decode tok/s | x baseline | mean TTFT ms | drafted | accepted | "
          "acceptance |")
    print("|---|---|---|---|---|---|---|")
    for name, r in [("plain", base), (f"ngram K={args.k}", spec)]:
        rate = f"{r['accepted'] / r['drafted']:.1%}" if r["drafted"] else "-"
        print(f"| {name} | {r['decode_tps']:.2f} | {r['decode_tps'] / base['decode_tps']:.2f} | "
              f"{r['ttft_ms']:.0f} | {r['drafted']} | {r['accepted']} | {rate} |")
    print()
    print(f"greedy outputs identical with and without speculation: {same}/{len(base['texts'])}; "
          f"tokens {base['tokens']} / {spec['tokens']}")
    if args.show:
        for i, text in enumerate(base["texts"][:len(reqs)]):
            print(f"output {i}: {text[:300]!r}")


if __name__ == "__main__":
    main()
