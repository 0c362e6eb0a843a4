"""m2fp4 serve against the official openai package: models, chat, streaming, tools, usage,
logprobs, stop strings, errors and auth (tiny random-weight model, greedy decoding)."""
import json

import openai
import pytest

from conftest import SERVE_FLAGS, Server, http

MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Name three colours."}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0)


def prompt_tokens(server, messages, tools=None):
    body = {"messages": messages}
    if tools:
        body["tools"] = tools
    status, out = http("POST", server.base + "/tokenize", body)
    assert status == 200
    return json.loads(out)["count"]


def test_models(client, server):
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert models.data[0].model_extra["max_model_len"] > 0


def test_chat_non_stream_usage_and_length(client, server):
    r = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12,
                                       temperature=0, extra_body={"ignore_eos": True})
    c = r.choices[0]
    assert c.finish_reason == "length"
    assert r.usage.completion_tokens == 12
    assert r.usage.prompt_tokens == prompt_tokens(server, MESSAGES)
    assert r.usage.total_tokens == r.usage.prompt_tokens + 12
    assert r.object == "chat.completion" and r.model == "tiny"
    msg = c.message.model_dump()
    # Reasoning is served under both names (minimax_m2 reasoning parser).
    assert msg.get("reasoning_content") == msg.get("reasoning")
    text = (msg.get("reasoning_content") or "") + (msg.get("content") or "")
    assert text


def test_stream_matches_non_stream(client):
    kwargs = dict(model="tiny", messages=MESSAGES, max_tokens=20, temperature=0)
    full = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(stream=True,
                                                 stream_options={"include_usage": True}, **kwargs))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens
    finish = [c.choices[0].finish_reason for c in chunks[:-1] if c.choices[0].finish_reason]
    assert finish == [full.choices[0].finish_reason]
    assert chunks[-2].choices[0].finish_reason is not None
    content = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                        for c in chunks[:-1])
    m = full.choices[0].message.model_dump()
    assert content == (m.get("content") or "")
    assert reasoning == (m.get("reasoning_content") or "")
    assert len({c.id for c in chunks}) == 1


def test_return_token_ids(client, server):
    kwargs = dict(model="tiny", messages=MESSAGES, max_tokens=12, temperature=0,
                  extra_body={"return_token_ids": True, "ignore_eos": True})
    full = client.chat.completions.create(**kwargs)
    ids = full.choices[0].model_extra["token_ids"]
    assert len(ids) == full.usage.completion_tokens == 12
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    streamed = [t for c in chunks for t in c.choices[0].model_extra.get("token_ids", [])]
    assert streamed == ids
    # Every chunk with text carries the ids of the tokens it completes.
    for c in chunks[1:]:
        d = c.choices[0].delta
        if d.content or (d.model_extra or {}).get("reasoning_content"):
            assert c.choices[0].model_extra["token_ids"]


def test_completions_and_stop_strings(client):
    base = client.completions.create(model="tiny", prompt="The weather today", max_tokens=24,
                                     temperature=0, extra_body={"ignore_eos": True})
    text = base.choices[0].text
    assert base.usage.completion_tokens == 24 and len(text) > 6
    stop = text[3:6]
    expected = text[:text.find(stop)]
    r = client.completions.create(model="tiny", prompt="The weather today", max_tokens=24,
                                  temperature=0, stop=[stop], extra_body={"ignore_eos": True})
    assert r.choices[0].text == expected and r.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny", prompt="The weather today", max_tokens=24, temperature=0, stop=[stop],
        stream=True, extra_body={"ignore_eos": True}))
    assert streamed == expected
    echo = client.completions.create(model="tiny", prompt="The weather today", max_tokens=4,
                                     temperature=0, echo=True)
    assert echo.choices[0].text.startswith("The weather today")


def test_logprobs_and_n(client):
    r = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=5,
                                       temperature=0, logprobs=True, top_logprobs=3, n=2,
                                       extra_body={"ignore_eos": True})
    assert len(r.choices) == 2
    assert r.choices[0].message == r.choices[1].message
    for choice in r.choices:
        entries = choice.logprobs.content
        assert len(entries) == 5
        for e in entries:
            assert len(e.top_logprobs) == 3
            lps = [t.logprob for t in e.top_logprobs]
            assert lps == sorted(lps, reverse=True)
            # Greedy: the chosen token is the most likely one.
            assert e.token == e.top_logprobs[0].token
            assert abs(e.logprob - lps[0]) < 1e-5 and e.logprob <= 0


def test_tools_accepted_and_in_prompt(client, server):
    for choice in ["auto", "none", "required",
                   {"type": "function", "function": {"name": "get_weather"}}]:
        r = client.chat.completions.create(model="tiny", messages=MESSAGES, tools=TOOLS,
                                           tool_choice=choice, max_tokens=4, temperature=0)
        assert r.usage.prompt_tokens == prompt_tokens(server, MESSAGES, TOOLS)
        assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")
    # A conversation with a previous tool call (arguments as the JSON string clients send).
    convo = MESSAGES + [
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    r = client.chat.completions.create(model="tiny", messages=convo, tools=TOOLS, max_tokens=3,
                                       temperature=0)
    assert r.usage.prompt_tokens == prompt_tokens(server, convo, TOOLS)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=MESSAGES, tools=TOOLS,
                                       tool_choice={"type": "function",
                                                    "function": {"name": "nope"}})


def expect_400(fn, fragment):
    with pytest.raises(openai.BadRequestError) as e:
        fn()
    assert fragment in str(e.value)


def test_errors(client, server):
    chat = client.chat.completions.create
    with pytest.raises(openai.NotFoundError):
        chat(model="nope", messages=MESSAGES)
    expect_400(lambda: chat(model="tiny", messages=[{"role": "wizard", "content": "x"}]), "role")
    expect_400(lambda: chat(model="tiny", messages=MESSAGES, max_tokens=-1), "max_tokens")
    expect_400(lambda: chat(model="tiny", messages=MESSAGES, max_tokens=10**9), "context length")
    expect_400(lambda: chat(model="tiny", messages=MESSAGES, temperature="hot"), "temperature")
    expect_400(lambda: chat(model="tiny", messages=MESSAGES, tools=[{"type": "function"}]), "tool")
    expect_400(lambda: chat(model="tiny", messages=[]), "messages")
    long_text = "word " * 6000
    expect_400(lambda: chat(model="tiny", messages=[{"role": "user", "content": long_text}]),
               "context length")
    status, body = http("POST", server.base + "/v1/chat/completions", b"{\"messages\": [")
    assert status == 400 and "error" in json.loads(body)
    deep = b"[" * 20000 + b"]" * 20000
    status, body = http("POST", server.base + "/v1/chat/completions",
                        b"{\"model\":\"tiny\",\"messages\":" + deep + b"}")
    assert status == 400 and "nested" in json.loads(body)["error"]["message"]
    status, body = http("POST", server.base + "/tokenize",
                        {"messages": [{"role": "user", "content": [[[[1]]]]}]})
    assert status == 400
    status, _ = http("POST", server.base + "/v1/completions", b"x" * (40 << 20))
    assert status == 413
    status, _ = http("GET", server.base + "/health")
    assert status == 200
    # Nothing else disturbed.
    assert chat(model="tiny", messages=MESSAGES, max_tokens=2).choices


def test_tokenize_detokenize(server):
    status, out = http("POST", server.base + "/tokenize", {"prompt": "hello world"})
    ids = json.loads(out)["tokens"]
    assert status == 200 and ids
    status, out = http("POST", server.base + "/detokenize", {"tokens": ids})
    assert status == 200 and json.loads(out)["prompt"].endswith("hello world")


def test_auth(tiny_model):
    s = Server(tiny_model, SERVE_FLAGS + ["--api-key", "sekret"])
    try:
        bad = openai.OpenAI(base_url=s.base + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        good = openai.OpenAI(base_url=s.base + "/v1", api_key="sekret", max_retries=0)
        assert good.chat.completions.create(model="tiny", messages=MESSAGES,
                                            max_tokens=2).choices
        assert http("GET", s.base + "/health")[0] == 200
        assert http("GET", s.base + "/metrics")[0] == 401
    finally:
        s.stop()


def test_keep_alive_connections_are_not_dropped(server):
    """cpp-httplib closes a kept-alive connection after 5 requests or 5 s idle by default, under
    clients that reuse it (llama-benchy's "Server disconnected"); the server lifts both."""
    import http.client
    host, port = server.base.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    body = json.dumps({"model": "tiny", "max_tokens": 1,
                       "messages": [{"role": "user", "content": "hi"}]})
    sock = None
    for i in range(12):
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("Connection", "").lower() != "close"
        r.read()
        sock = sock or conn.sock
        assert conn.sock is sock  # the same connection every time
    import time
    time.sleep(6)  # longer than cpp-httplib's default keep-alive timeout
    conn.request("GET", "/v1/models")
    r = conn.getresponse()
    assert r.status == 200 and conn.sock is sock
    r.read()
    conn.close()
