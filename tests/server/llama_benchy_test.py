"""llama-benchy 0.4.0 (PyPI), unmodified, against m2fp4 serve at small sizes: plain, --exact-tg,
--enable-prefix-caching with depth, and concurrency 2. The book is served from a local file on
loopback (--book-url) and the tokenizer is the tiny model's folder (--tokenizer)."""
import functools
import http.server
import os
import subprocess
import sys
import threading

import pytest

from conftest import SERVE_FLAGS, Server

BENCHY = os.path.join(os.path.dirname(sys.executable), "llama-benchy")


@pytest.fixture(scope="module")
def book_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("book")
    readme = os.path.join(os.environ.get("M2FP4_SOURCE_DIR", "."), "README.md")
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    (folder / "book.txt").write_text(text * 4, encoding="utf-8")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/book.txt"
    httpd.shutdown()


def run_benchy(server, model_dir, book_url, *args):
    # Latency mode none: the tiny model's prefill takes about as long as a GET /models, and
    # llama-benchy drops the pp rows when ttfr - latency <= 0.
    cmd = [BENCHY, "--base-url", server.base + "/v1", "--model", "tiny", "--tokenizer", model_dir,
           "--book-url", book_url, "--pp", "64", "--tg", "8", "--runs", "1", "--skip-coherence",
           "--exit-on-first-fail", "--latency-mode", "none", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Server disconnected" not in r.stdout + r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| tiny")]
    return r.stdout, rows


def test_llama_benchy(server, tiny_model, book_url):
    # --exact-tg (min_tokens + ignore_eos): a random-weight model may otherwise end at once.
    out, rows = run_benchy(server, tiny_model, book_url, "--exact-tg")
    # Every content chunk carries its token_ids (return_token_ids), so tokens are counted exactly.
    assert "No complete token_ids" not in out
    assert any("pp64" in row for row in rows) and any("tg8" in row for row in rows), out
    out, rows = run_benchy(server, tiny_model, book_url, "--exact-tg", "--concurrency", "1", "2")
    assert any("(c2)" in row for row in rows), out
    before = server.metrics()["vllm:prefix_cache_hits_total"]
    out, rows = run_benchy(server, tiny_model, book_url, "--exact-tg", "--enable-prefix-caching",
                           "--depth", "128")
    assert any("ctx_pp @ d128" in row for row in rows) and any("@ d128" in row for row in rows), out
    assert server.metrics()["vllm:prefix_cache_hits_total"] > before
