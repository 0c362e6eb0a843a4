"""`m2fp4 parse`: streamed MiniMax-M2 output in, OpenAI deltas out (serving.md (b)).

Expectations are hand-written from the spec; the deltas are merged here, independently of the
C++ merge, and tool arguments are checked against Python's own json.dumps formatting (what vLLM
sends).
"""

import json
import os
import re
import subprocess

import pytest

EXE = os.environ.get("M2FP4_EXE", "build/m2fp4")

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer"},
                    "unit": {"enum": ["celsius", "fahrenheit"]},
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "typed",
            "parameters": {
                "type": "object",
                "properties": {
                    "n": {"type": "number"},
                    "b": {"type": "boolean"},
                    "o": {"anyOf": [{"type": "object"}, {"type": "null"}]},
                    "opt": {"type": ["integer", "null"]},
                },
            },
        },
    },
]

OUTPUT = (
    "The user asks about Z\u00fcrich.\n</think>\n\nChecking \u2014 one moment.\n"
    "<minimax:tool_call>\n<invoke name=\"get_weather\">\n"
    "<parameter name=\"city\">Z\u00fcrich</parameter>\n"
    "<parameter name=\"days\">3</parameter>\n"
    "<parameter name=\"unit\">celsius</parameter>\n</invoke>\n"
    "<invoke name=\"typed\">\n<parameter name=\"n\">2.5</parameter>\n"
    "<parameter name=\"b\">yes</parameter>\n"
    "<parameter name=\"o\">{\"k\": [1, \"\u20ac\"]}</parameter>\n"
    "<parameter name=\"opt\">null</parameter>\n"
    "<parameter name=\"extra\">7</parameter>\n</invoke>\n</minimax:tool_call>"
)


def run_parse(stdin_text):
    return subprocess.run(
        [EXE, "parse"], input=stdin_text.encode("utf-8"), capture_output=True, timeout=60
    )


def parse(chunks, tools=None, reasoning_parser="minimax_m2", finish="stop"):
    request = {
        "chunks": chunks,
        "tools": tools,
        "reasoning_parser": reasoning_parser,
        "finish": finish,
    }
    proc = run_parse(json.dumps(request))
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    check_delta_shapes(out["deltas"])
    return out


def check_delta_shapes(deltas):
    seen = set()
    for delta in deltas:
        assert len(delta) == 1, delta
        if "content" in delta or "reasoning_content" in delta:
            assert next(iter(delta.values())) != ""
            continue
        for call in delta["tool_calls"]:
            if call["index"] not in seen:
                assert call["index"] == len(seen), "indices appear in order"
                seen.add(call["index"])
                assert re.fullmatch(r"call_[0-9a-f]{24}", call["id"]), call
                assert call["type"] == "function"
                assert call["function"]["name"]
            else:
                assert set(call) == {"index", "function"}
                assert set(call["function"]) == {"arguments"}


def merge(deltas):
    content = "".join(d.get("content", "") for d in deltas) or None
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas) or None
    calls = {}
    for d in deltas:
        for c in d.get("tool_calls", []):
            entry = calls.setdefault(c["index"], {"name": "", "arguments": ""})
            entry["name"] += c["function"].get("name", "")
            entry["arguments"] += c["function"].get("arguments", "")
    return content, reasoning, [calls[i] for i in sorted(calls)]


def test_full_output_streamed_one_character_at_a_time():
    out = parse(list(OUTPUT), tools=TOOLS)
    content, reasoning, calls = merge(out["deltas"])
    assert reasoning == "The user asks about Z\u00fcrich.\n"
    assert content == "\n\nChecking \u2014 one moment.\n"
    assert [c["name"] for c in calls] == ["get_weather", "typed"]
    args = [json.loads(c["arguments"]) for c in calls]
    assert args[0] == {"city": "Z\u00fcrich", "days": 3, "unit": "celsius"}
    assert args[1] == {"n": 2.5, "b": True, "o": {"k": [1, "\u20ac"]}, "opt": None, "extra": "7"}
    for c in calls:  # formatted as vLLM's json.dumps(ensure_ascii=False)
        assert c["arguments"] == json.dumps(json.loads(c["arguments"]), ensure_ascii=False)
    assert out["finish_reason"] == "tool_calls"
    message = out["message"]
    assert message["content"] == content and message["reasoning_content"] == reasoning
    assert [c["function"]["arguments"] for c in message["tool_calls"]] == [
        c["arguments"] for c in calls
    ]


def test_split_does_not_change_the_result():
    whole = parse([OUTPUT], tools=TOOLS)
    for size in (1, 2, 5, 17):
        chunks = [OUTPUT[i : i + size] for i in range(0, len(OUTPUT), size)]
        split = parse(chunks, tools=TOOLS)
        a, b = merge(whole["deltas"]), merge(split["deltas"])
        assert a[:2] == b[:2]
        assert [(c["name"], c["arguments"]) for c in a[2]] == [
            (c["name"], c["arguments"]) for c in b[2]
        ]


def test_without_tools_calls_stay_content():
    out = parse([OUTPUT], tools=None)
    content, reasoning, calls = merge(out["deltas"])
    assert calls == []
    assert content == OUTPUT[OUTPUT.index("</think>") + len("</think>") :]
    assert out["finish_reason"] == "stop"


def test_truncated_call_reports_length_and_valid_arguments():
    cut = OUTPUT[: OUTPUT.index("<parameter name=\"unit\">") + 12]
    out = parse([cut], tools=TOOLS, finish="length")
    _, _, calls = merge(out["deltas"])
    assert out["finish_reason"] == "length"
    assert [c["name"] for c in calls] == ["get_weather"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Z\u00fcrich", "days": 3}


def test_reasoning_parser_variants():
    out = parse(["r\n</think>\n\nok"], reasoning_parser="minimax_m2_append_think")
    assert merge(out["deltas"])[:2] == ("<think>r\n</think>\n\nok", None)
    out = parse(["<think>r</think>ok"], reasoning_parser="none")
    assert merge(out["deltas"])[:2] == ("<think>r</think>ok", None)
    out = parse(["still thinking"])
    assert merge(out["deltas"])[:2] == (None, "still thinking")
    assert out["finish_reason"] == "stop"


@pytest.mark.parametrize(
    "stdin_text",
    [
        "{\"chunks\": [",
        "not json",
        "[]",
        "{\"chunks\": \"text\"}",
        "{\"chunks\": [1, 2]}",
        "{\"chunks\": [], \"reasoning_parser\": \"deepseek\"}",
        "{\"chunks\": [], \"finish\": \"tool_calls\"}",
        "{\"chunks\": [], \"tools\": [{\"function\": {}}]}",
        # A tool schema nested 20,000 deep (issue 8: SIGSEGV): refused by the nesting limit.
        "{\"chunks\": [], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": "
        "\"f\", \"parameters\": " + "{\"anyOf\": [" * 20000 + "{}" + "]}" * 20000 + "}}]}",
    ],
)
def test_bad_stdin_is_one_line_and_exit_2(stdin_text):
    proc = run_parse(stdin_text)
    assert proc.returncode == 2
    assert proc.stdout == b""
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("m2fp4 parse: error:"), lines


def test_deeply_nested_parameter_value_stays_text():
    # Issue 8: a parameter value nested 100,000 deep made `m2fp4 parse` die with SIGSEGV. Past
    # the nesting limit (512) the value is not parsed as JSON and is kept as the string it is,
    # as vLLM keeps it when json.loads fails with RecursionError; shallower values still parse.
    deep = "[" * 100000 + "]" * 100000
    shallow = "[" * 100 + "]" * 100
    output = (
        "</think><minimax:tool_call>\n<invoke name=\"typed\">\n"
        f"<parameter name=\"o\">{deep}</parameter>\n"
        f"<parameter name=\"opt\">{shallow}</parameter>\n</invoke>\n</minimax:tool_call>"
    )
    out = parse([output[i : i + 4096] for i in range(0, len(output), 4096)], tools=TOOLS)
    _, _, calls = merge(out["deltas"])
    assert len(calls) == 1
    arguments = json.loads(calls[0]["arguments"])
    assert arguments["o"] == deep
    assert arguments["opt"] == json.loads(shallow)
