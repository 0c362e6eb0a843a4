"""m2fp4 serve under load and faults: 32 parallel streaming clients (complete, well-formed,
greedy outputs equal to sequential runs), prefix-cache hits in /metrics, a client disconnect
freeing its KV blocks, SIGTERM draining, and `serve` with no model (the built-in tiny one)."""
import concurrent.futures
import json
import os
import signal
import socket
import tempfile
import threading
import time

import openai
import pytest

from conftest import SERVE_FLAGS, Server, http


def stream_chat(base, content, max_tokens=16, system=None, ignore_eos=False):
    """Streams one greedy chat request with raw HTTP; returns (text, finish_reason, usage)."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": content}]
    body = json.dumps({"model": "tiny", "messages": messages, "max_tokens": max_tokens,
                       "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True},
                       "ignore_eos": ignore_eos}).encode()
    host, port = base.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=120) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  b"application/json\r\nContent-Length: " + str(len(body)).encode() +
                  b"\r\nConnection: close\r\n\r\n" + body)
        data = b""
        while True:
            part = s.recv(65536)
            if not part:
                break
            data += part
    head, _, raw = data.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0]
    # Undo chunked transfer encoding.
    payload = b""
    while raw:
        size_line, _, rest = raw.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        payload += rest[:size]
        raw = rest[size + 2:]
    events = [e for e in payload.decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text, finish = "", None
    for c in chunks[:-1]:
        assert c["object"] == "chat.completion.chunk"
        d = c["choices"][0]["delta"]
        text += (d.get("reasoning_content") or "") + "|" + (d.get("content") or "")
        finish = c["choices"][0]["finish_reason"] or finish
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert finish in ("stop", "length")
    return text, finish, chunks[-1]["usage"]


def test_parallel_streams_equal_sequential(server):
    prompts = [f"Question number {i}: what is {i} plus {i}?" for i in range(32)]
    sequential = [stream_chat(server.base, p) for p in prompts[:8]]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        parallel = list(pool.map(lambda p: stream_chat(server.base, p), prompts))
    for i in range(8):
        assert parallel[i][:2] == sequential[i][:2]
        assert parallel[i][2]["completion_tokens"] == sequential[i][2]["completion_tokens"]
    # Requests 8..31 ran only in the batch: a rerun of each alone gives the same text.
    for i in (8, 20, 31):
        assert stream_chat(server.base, prompts[i])[:2] == parallel[i][:2]


def test_prefix_cache_hits_on_repeated_system_prompt(server):
    system = "You are a meticulous assistant. " * 20
    before = server.metrics()
    stream_chat(server.base, "first question", max_tokens=2, system=system)
    mid = server.metrics()
    _, _, usage = stream_chat(server.base, "second question", max_tokens=2, system=system)
    after = server.metrics()
    hits_first = mid["vllm:prefix_cache_hits_total"] - before["vllm:prefix_cache_hits_total"]
    hits_second = after["vllm:prefix_cache_hits_total"] - mid["vllm:prefix_cache_hits_total"]
    assert hits_second > hits_first
    assert hits_second >= 16 * 5  # the shared system prompt spans several full blocks
    assert usage["prompt_tokens_details"]["cached_tokens"] == hits_second
    assert after["vllm:prefix_cache_queries_total"] > mid["vllm:prefix_cache_queries_total"]


def wait_metric(server, name, predicate, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = server.metrics()
        if predicate(m[name]):
            return m
        time.sleep(0.05)
    raise AssertionError(f"{name} stayed at {server.metrics()[name]}")


def test_disconnect_frees_kv_blocks(server):
    client = openai.OpenAI(base_url=server.base + "/v1", api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "tell a long story"}],
        max_tokens=3000, temperature=0, stream=True, extra_body={"ignore_eos": True})
    got = 0
    for _ in stream:
        got += 1
        if got == 5:
            break
    running = server.metrics()
    assert running["m2fp4:kv_blocks_used"] > 0 and running["vllm:num_requests_running"] == 1
    stream.close()  # the client goes away mid-stream
    t0 = time.time()
    m = wait_metric(server, "m2fp4:kv_blocks_used", lambda v: v == 0)
    assert m["vllm:num_requests_running"] == 0
    assert m["vllm:generation_tokens_total"] - running["vllm:generation_tokens_total"] < 2500
    assert time.time() - t0 < 20


def test_non_streaming_disconnect_frees_kv_blocks(server):
    """A client that closes its connection while a non-streaming request generates: the server
    notices (no write is pending, so only by watching the socket) and frees the KV blocks."""
    body = json.dumps({"model": "tiny", "prompt": "tell a long story", "max_tokens": 3000,
                       "temperature": 0, "ignore_eos": True}).encode()
    before = server.metrics()
    host, port = server.base.split("//")[1].split(":")
    s = socket.create_connection((host, int(port)), timeout=60)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
              b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    running = wait_metric(server, "vllm:generation_tokens_total",
                          lambda v: v >= before["vllm:generation_tokens_total"] + 20)
    assert running["m2fp4:kv_blocks_used"] > 0 and running["vllm:num_requests_running"] == 1
    s.close()  # the client goes away before any byte of the answer
    t0 = time.time()
    m = wait_metric(server, "m2fp4:kv_blocks_used", lambda v: v == 0)
    assert time.time() - t0 < 20
    assert m["vllm:num_requests_running"] == 0
    assert m["vllm:generation_tokens_total"] - running["vllm:generation_tokens_total"] < 2500
    # The official client giving up on a slow answer (its timeout closes the connection);
    # 8 choices of 3000 tokens keep the tiny model busy well past the timeout.
    impatient = openai.OpenAI(base_url=server.base + "/v1", api_key="x", max_retries=0,
                              timeout=0.5)
    before = server.metrics()
    with pytest.raises(openai.APITimeoutError):
        impatient.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "tell a long story"}],
            max_tokens=3000, n=8, temperature=0, extra_body={"ignore_eos": True})
    m = wait_metric(server, "m2fp4:kv_blocks_used", lambda v: v == 0)
    assert m["vllm:num_requests_running"] == 0
    assert m["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"] < 12000
    # The server still answers a non-streaming request of a connected client in full.
    client = openai.OpenAI(base_url=server.base + "/v1", api_key="x", max_retries=0)
    r = client.completions.create(model="tiny", prompt="hello", max_tokens=4, temperature=0,
                                  extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 4 and r.choices[0].finish_reason == "length"


def test_sigterm_drains(tiny_model):
    s = Server(tiny_model, SERVE_FLAGS + ["--trust-remote-code", "--dtype", "auto",
                                          "--tensor-parallel-size", "1"])
    try:
        assert "ignoring vLLM flags that do not apply here: --trust-remote-code --dtype auto" \
            in s.output()
        result = {}

        def long_request():
            result["r"] = stream_chat(s.base, "count slowly", max_tokens=4000, ignore_eos=True)

        t = threading.Thread(target=long_request)
        t.start()
        wait_metric(s, "vllm:num_requests_running", lambda v: v == 1)
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        status, body = http("POST", s.base + "/v1/chat/completions",
                            {"model": "tiny", "messages": [{"role": "user", "content": "x"}]})
        assert status == 503 and json.loads(body)["error"]["code"] == 503
        t.join(timeout=120)
        assert result["r"][2]["completion_tokens"] == 4000  # the running one finished
        assert s.proc.wait(timeout=60) == 0
    finally:
        s.stop()


def test_serve_without_model_uses_builtin_tiny():
    with tempfile.TemporaryDirectory(prefix="m2fp4-cache-") as cache:
        env = dict(os.environ, XDG_CACHE_HOME=cache)
        s = Server(None, [], env=env, model_arg=False)
        try:
            assert os.path.exists(os.path.join(cache, "m2fp4", "tiny", "config.json"))
            client = openai.OpenAI(base_url=s.base + "/v1", api_key="x", max_retries=0)
            assert [m.id for m in client.models.list().data] == ["m2fp4-tiny"]
            r = client.chat.completions.create(model="m2fp4-tiny", max_tokens=4,
                                               messages=[{"role": "user", "content": "hi"}])
            assert r.usage.completion_tokens >= 1
        finally:
            s.stop()


def test_bad_flags_are_errors(tiny_model):
    import subprocess
    from conftest import EXE
    r = subprocess.run([EXE, "serve", tiny_model, "--no-such-flag"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "no-such-flag" in r.stderr
    r = subprocess.run([EXE, "serve", tiny_model, "--tensor-parallel-size", "2"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2


def test_template_error_is_400_naming_the_line(tiny_model, tmp_path):
    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}{{ m.content }}\n"
                        "{% if m.role == 'assistant' %}{{ raise_exception('no assistants') }}"
                        "{% endif %}{% endfor %}")
    s = Server(tiny_model, SERVE_FLAGS + ["--chat-template", str(template)])
    try:
        ok = {"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
        assert http("POST", s.base + "/v1/chat/completions", ok)[0] == 200
        bad = dict(ok, messages=[{"role": "user", "content": "hi"},
                                 {"role": "assistant", "content": "x"}])
        status, body = http("POST", s.base + "/v1/chat/completions", bad)
        message = json.loads(body)["error"]["message"]
        assert status == 400 and "line 2" in message and "no assistants" in message
    finally:
        s.stop()
