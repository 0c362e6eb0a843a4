"""Structured output through the official openai package against m2fp4 serve on the tiny
random-weight model: response_format json_object / json_schema and tool_choice required / named
are enforced (thinking disabled, so the constraint holds from the first token). A random model
rarely closes a JSON object within a few tokens, so a "length" answer must be a valid JSON
prefix (checked by completing it in Python and parsing it with json.loads)."""
import json

import openai
import pytest

NO_THINKING = {"chat_template_kwargs": {"enable_thinking": False}}
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object",
                       "properties": {"city": {"enum": ["Paris", "Rome"]},
                                      "days": {"type": "integer"}},
                       "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "get_time", "parameters": {"type": "object",
                                           "properties": {"utc": {"type": "boolean"}}}}},
]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0)


def complete_json_prefix(text):
    """Closes a JSON text cut anywhere (an independent reading of the JSON grammar): finishes
    the open string, number or literal, supplies a missing value or key, closes the brackets.
    json.loads of the result fails if the text was not a prefix of some JSON document."""
    stack, i, n = [], 0, len(text)
    # value | value_or_close (after '[') | key | key_or_close (after '{') | colon | after | done
    expect = "value"

    def closed():
        return "".join("}" if s == "{" else "]" for s in reversed(stack))

    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
            continue
        if expect in ("value_or_close", "key_or_close") and c == "]}"[expect == "key_or_close"]:
            stack.pop()
            expect = "after" if stack else "done"
            i += 1
            continue
        is_key = expect in ("key", "key_or_close")
        if is_key and c != '"':
            return text  # not JSON: json.loads will say so
        if expect in ("value", "value_or_close") or is_key:
            if c == '"':
                j, esc = i + 1, False
                while j < n and (esc or text[j] != '"'):
                    esc = not esc and text[j] == "\\"
                    j += 1
                if j == n:  # cut inside the string
                    tail = text[i:]
                    if esc:
                        tail += "n"
                    elif "\\u" in tail[-5:]:
                        tail += "0" * (6 - (len(tail) - tail.rindex("\\u")))
                    return text[:i] + tail + '"' + (":0" if is_key else "") + closed()
                i = j + 1
                expect = "colon" if is_key else ("after" if stack else "done")
            elif c in "[{":
                stack.append(c)
                expect = "key_or_close" if c == "{" else "value_or_close"
                i += 1
            else:
                j = i
                while j < n and text[j] not in ",]} \t\r\n":
                    j += 1
                word = text[i:j]
                if j == n:  # cut inside a scalar
                    for lit in ("true", "false", "null"):
                        if lit.startswith(word):
                            return text[:i] + lit + closed()
                    return text + ("0" if word[-1] in "-+.eE" else "") + closed()
                i = j
                expect = "after" if stack else "done"
            continue
        if expect == "colon" and c == ":":
            expect = "value"
        elif expect == "after" and c == ",":
            expect = "key" if stack[-1] == "{" else "value"
        elif expect == "after" and c in "]}":
            stack.pop()
            expect = "after" if stack else "done"
        else:
            return text
        i += 1
    filler = {"value": "0", "value_or_close": "", "key": '"k":0', "key_or_close": "",
              "colon": ":0", "after": "", "done": ""}[expect]
    if expect == "value" and not stack:
        filler = "{}"
    return text + filler + closed()


def test_prefix_completer_on_known_cases():
    for prefix in ['{"a": [1, 2', '{"a', '{"a": "x\\', '{"a": tr', '{"a": -', '{', '  ',
                   '{"a": {"b": [', '{"a": 1,', '{"a": "\\u00']:
        json.loads(complete_json_prefix(prefix))
    for bad in ['{"a" 1', '{]', '[1,]', '{"a": 01']:
        with pytest.raises(json.JSONDecodeError):
            json.loads(complete_json_prefix(bad))


def check_json_object(content, finish_reason):
    if finish_reason == "stop":
        assert isinstance(json.loads(content), dict), content
    else:
        assert finish_reason == "length"
        assert content.lstrip().startswith("{"), content
        json.loads(complete_json_prefix(content))


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_json_object(client, temperature):
    r = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=40, temperature=temperature, seed=3,
        response_format={"type": "json_object"}, extra_body=NO_THINKING)
    c = r.choices[0]
    check_json_object(c.message.content, c.finish_reason)


def test_json_object_streaming_matches(client):
    kwargs = dict(model="tiny", messages=MESSAGES, max_tokens=30, temperature=0,
                  response_format={"type": "json_object"}, extra_body=NO_THINKING)
    full = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    content = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert content == full.choices[0].message.content
    assert finish == [full.choices[0].finish_reason]
    check_json_object(content, finish[0])


def test_json_schema_scalar_completes(client):
    # A boolean closes in one token: the answer ends with EOS ("stop") and parses.
    r = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=20, temperature=1.0, n=3, seed=5,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "flag", "schema": {"type": "boolean"}}},
        extra_body=NO_THINKING)
    assert len(r.choices) == 3
    for c in r.choices:
        assert c.finish_reason == "stop"
        assert isinstance(json.loads(c.message.content), bool), c.message.content


def test_json_schema_array(client):
    r = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=30, temperature=0,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "list", "schema": {"type": "array"}}},
        extra_body=NO_THINKING)
    c = r.choices[0]
    assert c.message.content.lstrip().startswith("[")
    if c.finish_reason == "stop":
        assert isinstance(json.loads(c.message.content), list)
    else:
        json.loads(complete_json_prefix(c.message.content))


def test_json_schema_object_properties(client):
    schema = {"type": "object",
              "properties": {"answer": {"enum": ["yes", "no"]}, "sure": {"type": "boolean"}},
              "required": ["answer"]}
    r = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=150, temperature=1.0, n=2, seed=8,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "verdict", "schema": schema}},
        extra_body=NO_THINKING)
    for c in r.choices:
        assert c.finish_reason == "stop", c.message.content
        doc = json.loads(c.message.content)
        assert doc["answer"] in ("yes", "no")
        assert set(doc) <= {"answer", "sure"}
        if "sure" in doc:
            assert isinstance(doc["sure"], bool)


def test_reasoning_is_free(client):
    # Thinking on (the prompt ends inside <think>): nothing is masked before </think>, so a
    # greedy answer whose reasoning never closes is the same with and without response_format.
    kwargs = dict(model="tiny", messages=MESSAGES, max_tokens=30, temperature=0,
                  extra_body={"return_token_ids": True})
    free = client.chat.completions.create(**kwargs)
    forced = client.chat.completions.create(response_format={"type": "json_object"}, **kwargs)
    free_msg = free.choices[0].message.model_dump()
    assert "</think>" not in (free_msg.get("reasoning_content") or "")
    assert free_msg.get("content") is None
    assert forced.choices[0].model_extra["token_ids"] == free.choices[0].model_extra["token_ids"]
    assert forced.choices[0].message.model_dump() == free_msg


def test_bad_schema_type_is_400(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=5,
            response_format={"type": "json_schema",
                             "json_schema": {"name": "x", "schema": {"type": "date"}}})


def check_calls(calls, names):
    assert calls, "no tool calls"
    for call in calls:
        assert call.type == "function"
        assert call.function.name in names
        args = json.loads(call.function.arguments)
        assert isinstance(args, dict)
        if call.function.name == "get_weather":
            assert args["city"] in ("Paris", "Rome")
            assert set(args) <= {"city", "days"}
            if "days" in args:
                assert isinstance(args["days"], int)
        else:
            assert set(args) <= {"utc"}
            if "utc" in args:
                assert isinstance(args["utc"], bool)


def test_named_tool_choice(client):
    r = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=200, temperature=0, tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False, extra_body=NO_THINKING)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    assert len(c.message.tool_calls) == 1
    check_calls(c.message.tool_calls, {"get_weather"})
    assert not (c.message.content or "").strip()


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_required_tool_choice(client, temperature):
    r = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=300, temperature=temperature, seed=11,
        tools=TOOLS, tool_choice="required", extra_body=NO_THINKING)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    check_calls(c.message.tool_calls, {"get_weather", "get_time"})


def test_named_tool_choice_streaming(client):
    stream = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=200, temperature=0, tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}}, stream=True,
        extra_body=NO_THINKING)
    names, args, finish = {}, {}, []
    for ch in stream:
        if not ch.choices:
            continue
        d = ch.choices[0].delta
        for tc in d.tool_calls or []:
            if tc.function.name:
                names[tc.index] = tc.function.name
            args[tc.index] = args.get(tc.index, "") + (tc.function.arguments or "")
        if ch.choices[0].finish_reason:
            finish.append(ch.choices[0].finish_reason)
    assert finish == ["tool_calls"]
    assert names and set(names.values()) == {"get_time"}
    for a in args.values():
        parsed = json.loads(a)
        assert set(parsed) <= {"utc"}
