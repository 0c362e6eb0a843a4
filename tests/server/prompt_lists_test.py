"""/v1/completions with a list of prompts (strings, token-id lists) as OpenAI and vLLM accept it:
choice index = prompt * n + sample, each prompt its own engine request (greedy outputs equal to
one request per prompt), usage summed over the prompts, streaming with one [DONE] and one usage
chunk, echo per prompt, 400 errors for empty or mixed lists and ids outside the vocabulary."""
import json

import openai
import pytest

from conftest import http

PROMPTS = ["The weather today", "Once upon a time there was", "def add(a, b):"]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0)


def token_ids(server, text):
    status, out = http("POST", server.base + "/tokenize", {"prompt": text})
    assert status == 200
    return json.loads(out)["tokens"]


def one_by_one(client, prompts, **kw):
    """The independent expectation: one request per prompt."""
    return [client.completions.create(model="tiny", prompt=p, **kw) for p in prompts]


GREEDY = dict(max_tokens=6, temperature=0, extra_body={"ignore_eos": True})


def test_string_list_with_n_indexes_prompt_times_n(client, server):
    single = one_by_one(client, PROMPTS, **GREEDY)
    before = server.metrics()
    r = client.completions.create(model="tiny", prompt=PROMPTS, n=2, **GREEDY)
    after = server.metrics()
    assert [c.index for c in r.choices] == list(range(6))
    for i, s in enumerate(single):
        for j in range(2):
            c = r.choices[i * 2 + j]
            assert c.text == s.choices[0].text and c.finish_reason == "length"
    assert r.usage.prompt_tokens == sum(s.usage.prompt_tokens for s in single)
    assert r.usage.completion_tokens == 6 * 6
    assert r.usage.total_tokens == r.usage.prompt_tokens + 36
    # Six engine requests finished (one per prompt and sample).
    assert after["vllm:request_success_total"] - before["vllm:request_success_total"] == 6


def test_token_id_lists_equal_text_prompts(client, server):
    ids = [token_ids(server, p) for p in PROMPTS]
    by_text = client.completions.create(model="tiny", prompt=PROMPTS, **GREEDY)
    by_ids = client.completions.create(model="tiny", prompt=ids, **GREEDY)
    assert [c.text for c in by_ids.choices] == [c.text for c in by_text.choices]
    assert by_ids.usage.prompt_tokens == sum(len(x) for x in ids)
    # A flat list of ids is one prompt.
    flat = client.completions.create(model="tiny", prompt=ids[1], **GREEDY)
    assert len(flat.choices) == 1 and flat.choices[0].text == by_text.choices[1].text
    # Prompts of different lengths without max_tokens: each gets its own room (no 400).
    status, out = http("POST", server.base + "/v1/completions",
                       {"model": "tiny", "prompt": [ids[0], ids[1] * 3], "temperature": 0,
                        "max_tokens": 2})
    assert status == 200 and len(json.loads(out)["choices"]) == 2


def test_seeded_sampling_is_per_prompt(client):
    r = client.completions.create(model="tiny", prompt=[PROMPTS[0], PROMPTS[0]], n=2,
                                  max_tokens=8, temperature=1.0, seed=7,
                                  extra_body={"ignore_eos": True})
    texts = [c.text for c in r.choices]
    # Same prompt and seed: prompt 1's samples repeat prompt 0's, as separate requests would.
    assert texts[0:2] == texts[2:4]
    alone = client.completions.create(model="tiny", prompt=PROMPTS[0], n=2, max_tokens=8,
                                      temperature=1.0, seed=7, extra_body={"ignore_eos": True})
    assert [c.text for c in alone.choices] == texts[0:2]


def test_streaming_list(client):
    expected = client.completions.create(model="tiny", prompt=PROMPTS, n=2, **GREEDY)
    stream = client.completions.create(model="tiny", prompt=PROMPTS, n=2, stream=True,
                                       stream_options={"include_usage": True}, **GREEDY)
    texts, finishes, usages = [""] * 6, [None] * 6, []
    for chunk in stream:
        if chunk.usage is not None and not chunk.choices:
            usages.append(chunk.usage)
            continue
        assert len(chunk.choices) == 1
        c = chunk.choices[0]
        assert finishes[c.index] is None, "a chunk after the choice's finish"
        texts[c.index] += c.text
        finishes[c.index] = c.finish_reason
    assert texts == [c.text for c in expected.choices]
    assert finishes == ["length"] * 6
    assert len(usages) == 1 and usages[0].prompt_tokens == expected.usage.prompt_tokens
    assert usages[0].completion_tokens == expected.usage.completion_tokens


def test_streaming_raw_done_once_at_the_end(server):
    status, out = http("POST", server.base + "/v1/completions",
                       {"model": "tiny", "prompt": PROMPTS[:2], "stream": True, "max_tokens": 3,
                        "temperature": 0, "ignore_eos": True,
                        "stream_options": {"include_usage": True}})
    assert status == 200
    events = [e for e in out.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]" and events.count("data: [DONE]") == 1
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6
    assert sum(1 for c in chunks if not c["choices"]) == 1
    ends = [c["choices"][0]["index"] for c in chunks[:-1] if c["choices"][0]["finish_reason"]]
    assert sorted(ends) == [0, 1]


def test_echo_per_prompt(client):
    r = client.completions.create(model="tiny", prompt=PROMPTS, echo=True, **GREEDY)
    plain = client.completions.create(model="tiny", prompt=PROMPTS, **GREEDY)
    for p, e, c in zip(PROMPTS, r.choices, plain.choices):
        assert e.text == p + c.text
    streamed = [""] * 3
    for chunk in client.completions.create(model="tiny", prompt=PROMPTS, echo=True, stream=True,
                                           **GREEDY):
        for c in chunk.choices:
            streamed[c.index] += c.text
    assert streamed == [c.text for c in r.choices]


def test_logprobs_per_choice(client):
    r = client.completions.create(model="tiny", prompt=PROMPTS[:2], logprobs=2, echo=True,
                                  **GREEDY)
    plain = client.completions.create(model="tiny", prompt=PROMPTS[:2], logprobs=2, **GREEDY)
    for p, c, q in zip(PROMPTS, r.choices, plain.choices):
        assert q.logprobs.tokens == c.logprobs.tokens
        assert q.logprobs.token_logprobs == pytest.approx(c.logprobs.token_logprobs, abs=1e-4)
        assert [o + len(p.encode()) for o in q.logprobs.text_offset] == c.logprobs.text_offset
        lp = c.logprobs
        assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 6
        # Offsets index the returned text, which starts with the echoed prompt (prompt logprobs
        # are not computed: the lists cover the output tokens only).
        assert c.text.startswith(p) and lp.text_offset[0] == len(p.encode())
        assert lp.text_offset == sorted(lp.text_offset)


def test_errors(client, server):
    url = server.base + "/v1/completions"
    cases = [[], ["a", [1, 2]], [[1, 2], "a"], [1, "a"], [[1, 2], [10 ** 8]], [["a"]], [None], 5]
    for prompt in cases:
        status, out = http("POST", url, {"model": "tiny", "prompt": prompt, "max_tokens": 2})
        err = json.loads(out)["error"]
        assert status == 400 and err["param"] == "prompt" and err["code"] == 400, prompt
        assert err["type"] == "invalid_request_error"
    status, out = http("POST", url, {"model": "tiny", "prompt": ["x", ""], "max_tokens": 2,
                                     "add_special_tokens": False})
    assert status == 400 and "empty" in json.loads(out)["error"]["message"]
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="tiny", prompt=[], max_tokens=2)
    # Nothing was started for a rejected list, nothing holds KV blocks.
    m = server.metrics()
    assert m["vllm:num_requests_running"] == 0 and m["m2fp4:kv_blocks_used"] == 0
