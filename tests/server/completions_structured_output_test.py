"""Structured output on /v1/completions through the official openai package (whose
completions.create has no response_format argument: it goes in extra_body, as for vLLM) against m2fp4 serve on
the tiny random-weight model: response_format json_object / json_schema (and vLLM's
structured_outputs json / json_object) hold from the first generated token, one constraint per
engine request (prompt lists, n), streamed and one-shot alike; the same token ids through
/v1/chat/completions (thinking disabled) and /v1/completions give the same constrained text.
A random model rarely closes a JSON object within a few tokens, so a "length" answer must be a
valid JSON prefix (completed in Python by structured_output_test's independent completer)."""
import json

import openai
import pytest

from conftest import http
from structured_output_test import complete_json_prefix

PROMPTS = ["The weather today", "Once upon a time there was"]
SCHEMA = {"type": "object",
          "properties": {"answer": {"enum": ["yes", "no"]}, "sure": {"type": "boolean"}},
          "required": ["answer"]}


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0)


def check_json_object(text, finish_reason):
    if finish_reason == "stop":
        assert isinstance(json.loads(text), dict), text
    else:
        assert finish_reason == "length"
        assert text.lstrip().startswith("{"), text
        json.loads(complete_json_prefix(text))


def check_verdict(text, finish_reason):
    assert finish_reason == "stop", text
    doc = json.loads(text)
    assert doc["answer"] in ("yes", "no")
    assert set(doc) <= {"answer", "sure"}
    if "sure" in doc:
        assert isinstance(doc["sure"], bool)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_json_object_every_choice_of_a_prompt_list(client, temperature):
    r = client.completions.create(model="tiny", prompt=PROMPTS, n=2, max_tokens=30,
                                  temperature=temperature, seed=3,
                                  extra_body={"response_format": {"type": "json_object"}})
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    for c in r.choices:
        check_json_object(c.text, c.finish_reason)
    # Unconstrained, the same greedy request writes something else (the constraint did act).
    if temperature == 0.0:
        free = client.completions.create(model="tiny", prompt=PROMPTS[0], max_tokens=30,
                                         temperature=0)
        assert not free.choices[0].text.lstrip().startswith("{")


def test_json_schema_scalar_completes(client):
    # A boolean closes in one token: every choice ends with EOS ("stop") and parses.
    r = client.completions.create(
        model="tiny", prompt=PROMPTS, n=3, max_tokens=20, temperature=1.0, seed=5,
        extra_body={"response_format": {
            "type": "json_schema", "json_schema": {"name": "flag", "schema": {"type": "boolean"}}}})
    assert len(r.choices) == 6
    for c in r.choices:
        assert c.finish_reason == "stop"
        assert isinstance(json.loads(c.text), bool), c.text


def test_json_schema_object_properties(client):
    r = client.completions.create(
        model="tiny", prompt=PROMPTS, n=2, max_tokens=150, temperature=1.0, seed=8,
        extra_body={"response_format": {
            "type": "json_schema", "json_schema": {"name": "verdict", "schema": SCHEMA}}})
    for c in r.choices:
        check_verdict(c.text, c.finish_reason)


def test_streaming_matches_one_shot(client):
    kwargs = dict(model="tiny", prompt=PROMPTS, max_tokens=25, temperature=0,
                  extra_body={"response_format": {"type": "json_object"}})
    full = client.completions.create(**kwargs)
    texts, finish = ["", ""], [None, None]
    for chunk in client.completions.create(stream=True, **kwargs):
        for c in chunk.choices:
            texts[c.index] += c.text
            if c.finish_reason:
                finish[c.index] = c.finish_reason
    assert texts == [c.text for c in full.choices]
    assert finish == [c.finish_reason for c in full.choices]
    for t, f in zip(texts, finish):
        check_json_object(t, f)


def test_echo_keeps_the_prompt_in_front(client):
    r = client.completions.create(model="tiny", prompt=PROMPTS[0], max_tokens=20, temperature=0,
                                  echo=True,
                                  extra_body={"response_format": {"type": "json_object"}})
    plain = client.completions.create(model="tiny", prompt=PROMPTS[0], max_tokens=20,
                                      temperature=0,
                                      extra_body={"response_format": {"type": "json_object"}})
    assert r.choices[0].text == PROMPTS[0] + plain.choices[0].text


def test_structured_outputs_equal_response_format(client):
    # vLLM's structured_outputs (json as an object or as JSON text, json_object) is the same
    # constraint as response_format.
    greedy = dict(model="tiny", prompt=PROMPTS[1], max_tokens=40, temperature=0)
    by_rf = client.completions.create(
        extra_body={"response_format": {"type": "json_schema",
                                        "json_schema": {"name": "v", "schema": SCHEMA}}},
        **greedy)
    for schema in (SCHEMA, json.dumps(SCHEMA)):
        by_so = client.completions.create(extra_body={"structured_outputs": {"json": schema}},
                                          **greedy)
        assert by_so.choices[0].text == by_rf.choices[0].text
    rf_obj = client.completions.create(extra_body={"response_format": {"type": "json_object"}},
                                       **greedy)
    so_obj = client.completions.create(extra_body={"structured_outputs": {"json_object": True}},
                                       **greedy)
    assert so_obj.choices[0].text == rf_obj.choices[0].text


def test_chat_and_completions_agree_on_the_same_token_ids(client, server):
    messages = [{"role": "user", "content": "Give me a verdict."}]
    no_thinking = {"enable_thinking": False}
    # The chat request's prompt: the template's text with the think block closed, as the server
    # builds it for enable_thinking false, tokenized without added special tokens.
    status, out = http("POST", server.base + "/tokenize",
                       {"messages": messages, "chat_template_kwargs": no_thinking})
    assert status == 200
    status, out = http("POST", server.base + "/detokenize", {"tokens": json.loads(out)["tokens"]})
    assert status == 200
    text = json.loads(out)["prompt"]
    assert text.endswith("<think>\n")
    status, out = http("POST", server.base + "/tokenize",
                       {"prompt": text + "</think>\n\n", "add_special_tokens": False})
    assert status == 200
    ids = json.loads(out)["tokens"]
    for rf in ({"type": "json_object"},
               {"type": "json_schema", "json_schema": {"name": "v", "schema": SCHEMA}}):
        chat = client.chat.completions.create(
            model="tiny", messages=messages, max_tokens=60, temperature=0, response_format=rf,
            extra_body={"chat_template_kwargs": no_thinking, "return_token_ids": True})
        comp = client.completions.create(
            model="tiny", prompt=ids, max_tokens=60, temperature=0,
            extra_body={"response_format": rf, "return_token_ids": True})
        assert chat.usage.prompt_tokens == len(ids) == comp.usage.prompt_tokens
        assert chat.choices[0].model_extra["token_ids"] == comp.choices[0].model_extra["token_ids"]
        assert chat.choices[0].message.content == comp.choices[0].text
        assert chat.choices[0].finish_reason == comp.choices[0].finish_reason
        check_json_object(comp.choices[0].text, comp.choices[0].finish_reason)


def test_errors(client, server):
    url = server.base + "/v1/completions"
    base = {"model": "tiny", "prompt": "x", "max_tokens": 2}
    cases = [
        ({"response_format": {"type": "json_schema",
                              "json_schema": {"name": "x", "schema": {"type": "date"}}}},
         "response_format"),
        ({"response_format": {"type": "yaml"}}, "response_format"),
        ({"structured_outputs": {"regex": "a+"}}, "structured_outputs"),
        ({"structured_outputs": {"json": "{not json"}}, "structured_outputs"),
        ({"structured_outputs": {"json": 5}}, "structured_outputs"),
        ({"structured_outputs": {"json": {"type": "object"}, "json_object": True}},
         "structured_outputs"),
        ({"structured_outputs": {"json_object": True},
          "response_format": {"type": "json_object"}}, "structured_outputs"),
        ({"structured_outputs": "json"}, "structured_outputs"),
    ]
    for extra, param in cases:
        status, out = http("POST", url, {**base, **extra})
        assert status == 400, extra
        assert json.loads(out)["error"]["param"] == param, extra
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="tiny", prompt="x", max_tokens=2,
                                  extra_body={"structured_outputs": {"choice": ["a", "b"]}})


def test_echo_with_max_tokens_zero_returns_the_prompt(client, server):
    # vLLM's echo without generation: the text is the prompt alone, no output tokens counted.
    kw = dict(model="tiny", prompt=PROMPTS, n=2, max_tokens=0, echo=True, temperature=0,
              extra_body={"ignore_eos": True})
    r = client.completions.create(**kw)
    assert [c.text for c in r.choices] == [p for p in PROMPTS for _ in range(2)]
    assert {c.finish_reason for c in r.choices} == {"length"}
    ids = []
    for p in PROMPTS:
        status, out = http("POST", server.base + "/tokenize", {"prompt": p})
        assert status == 200
        ids.append(json.loads(out)["tokens"])
    assert r.usage.prompt_tokens == sum(len(x) for x in ids)
    assert r.usage.completion_tokens == 0
    streamed, finish = ["", ""], [[], []]
    for chunk in client.completions.create(model="tiny", prompt=PROMPTS, max_tokens=0, echo=True,
                                           stream=True, extra_body={"ignore_eos": True}):
        for c in chunk.choices:
            streamed[c.index] += c.text
            if c.finish_reason:
                finish[c.index].append(c.finish_reason)
    assert streamed == PROMPTS and finish == [["length"], ["length"]]
    # Without echo, 0 is an error, as in vLLM; chat never takes 0.
    status, out = http("POST", server.base + "/v1/completions",
                       {"model": "tiny", "prompt": "x", "max_tokens": 0})
    assert status == 400 and json.loads(out)["error"]["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", max_tokens=0,
                                       messages=[{"role": "user", "content": "x"}])
