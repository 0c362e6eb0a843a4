"""`m2fp4 run --prompt/--messages` end to end on a make-tiny model: the prompt is the chat template
rendered by transformers' own renderer and tokenized by Hugging Face `tokenizers`; the output is
the generated ids decoded by `tokenizers` and parsed in one piece by `m2fp4 parse`."""
import json
import os
import subprocess

import pytest
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

EXE = os.environ["M2FP4_EXE"]


def m2fp4(*args, stdin=None):
    p = subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=120,
                       input=stdin)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    m2fp4("make-tiny", "--out", d, "--seed", "9")
    return d


def test_make_tiny_tokenizer_is_a_valid_hf_tokenizer(tiny):
    tok = Tokenizer.from_file(str(tiny / "tokenizer.json"))
    assert tok.get_vocab_size(with_added_tokens=True) == 512
    cfg = json.loads((tiny / "config.json").read_text())
    assert tok.token_to_id("[e~[") == cfg["eos_token_id"]
    assert tok.token_to_id("]~!b[") == cfg["bos_token_id"]
    for special in ["<think>", "</think>", "<minimax:tool_call>", "</minimax:tool_call>"]:
        assert tok.token_to_id(special) is not None


@pytest.mark.parametrize("with_tools", [False, True])
def test_run_messages_matches_hf_rendering_and_parsing(tiny, tmp_path, with_tools):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris? Answer in émojis 🌦️."},
    ]
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather by city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                        "days": {"type": "integer"}}}}}]
    request = {"messages": messages, "tools": tools if with_tools else None}
    (tmp_path / "req.json").write_text(json.dumps(request, ensure_ascii=False))
    out = json.loads(m2fp4("run", "--model", tiny, "--messages", tmp_path / "req.json",
                           "--max-tokens", "24", "--json"))

    hf = PreTrainedTokenizerFast.from_pretrained(str(tiny))
    text = hf.apply_chat_template(messages, tools=request["tools"], tokenize=False,
                                  add_generation_prompt=True)
    want_prompt = Tokenizer.from_file(str(tiny / "tokenizer.json")).encode(
        text, add_special_tokens=False).ids
    assert out["prompt_tokens"] == len(want_prompt)

    ids = out["token_ids"]
    eos = json.loads((tiny / "config.json").read_text())["eos_token_id"]
    finish = "stop" if ids and ids[-1] == eos else "length"
    decoded = Tokenizer.from_file(str(tiny / "tokenizer.json")).decode(
        [i for i in ids if i != eos], skip_special_tokens=True)
    parsed = json.loads(m2fp4("parse", stdin=json.dumps({
        "chunks": [decoded], "tools": request["tools"], "reasoning_parser": "minimax_m2",
        "finish": finish})))
    assert out["message"] == parsed["message"]
    assert out["finish_reason"] == parsed["finish_reason"]


def test_run_prompt_equals_single_user_message(tiny, tmp_path):
    (tmp_path / "m.json").write_text(json.dumps([{"role": "user", "content": "hi there"}]))
    a = json.loads(m2fp4("run", "--model", tiny, "--prompt", "hi there", "--max-tokens", "8",
                         "--json"))
    b = json.loads(m2fp4("run", "--model", tiny, "--messages", tmp_path / "m.json",
                         "--max-tokens", "8", "--json"))
    assert a == b


def test_run_text_modes_refuse_bad_input(tiny, tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    p = subprocess.run([EXE, "run", "--model", str(tiny), "--messages", str(tmp_path / "bad.json")],
                       capture_output=True, text=True)
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1
    p = subprocess.run([EXE, "run", "--model", str(tiny), "--prompt", "x", "--tokens", "1"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
