"""The tokenizer make-tiny ships (m2fp4's byte-level BPE trainer): Hugging Face `tokenizers`
loads it, sees exactly the requested vocab size with MiniMax's added tokens last, and encodes
and decodes a varied corpus exactly as m2fp4 does."""

import json
import os
import subprocess
import sys

import pytest
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_corpus  # noqa: E402

EXE = os.environ.get("M2FP4_EXE", "")
MINIMAX_ADDED = [("]~!b[", True), ("[e~[", True), ("]!d~[", True), ("]!p~[", True), ("]~b]", True),
                 ("<think>", False), ("</think>", False), ("<minimax:tool_call>", False),
                 ("</minimax:tool_call>", False)]


def train(vocab_size, out_dir):
    proc = subprocess.run([EXE, "tokenize", "--train-tiny", str(vocab_size), "--out", str(out_dir)],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")


def m2fp4_encode(model_dir, texts, tmp_path):
    path = tmp_path / "in.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    proc = subprocess.run([EXE, "tokenize", "--model", str(model_dir), "--json", "--decode",
                           "--file", str(path)], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    lines = proc.stdout.decode("utf-8").split("\n")[:-1]
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("vocab_size", [512, 1500])
def test_trained_tokenizer_matches_hf(vocab_size, tmp_path):
    assert EXE and os.path.exists(EXE)
    out = tmp_path / "tok"
    train(vocab_size, out)
    hf = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert hf.get_vocab_size(with_added_tokens=True) == vocab_size
    decoder = hf.get_added_tokens_decoder()
    first = vocab_size - len(MINIMAX_ADDED)
    for k, (content, special) in enumerate(MINIMAX_ADDED):
        assert decoder[first + k].content == content
        assert decoder[first + k].special == special
        assert hf.token_to_id(content) == first + k
    with open(out / "tokenizer_config.json", encoding="utf-8") as f:
        config = json.load(f)
    assert config["bos_token"] == "]~!b[" and config["eos_token"] == "[e~["

    texts = tokenizer_corpus.corpus([c for c, _ in MINIMAX_ADDED], big_bytes=1 << 18)
    texts.append("]~!b[]~b]system\nYou are a helpful assistant.[e~[\n]~b]user\nhi[e~[\n"
                 "]~b]ai\n<think>\nThe user says hi.\n</think>\n\nHello!<minimax:tool_call>\n"
                 "<invoke name=\"f\">\n<parameter name=\"x\">1</parameter>\n</invoke>\n"
                 "</minimax:tool_call>[e~[\n")
    results = m2fp4_encode(out, texts, tmp_path)
    mismatches = []
    for text, got in zip(texts, results):
        want = hf.encode(text, add_special_tokens=False).ids
        if got["ids"] != want:
            mismatches.append(f"ids differ for {text[:80]!r}")
        elif got["text"] != hf.decode(want, skip_special_tokens=False):
            mismatches.append(f"decode differs for {text[:80]!r}")
        elif got["text_skip_special"] != hf.decode(want, skip_special_tokens=True):
            mismatches.append(f"decode (skip special) differs for {text[:80]!r}")
    assert not mismatches, f"{len(mismatches)} mismatches: " + "\n".join(mismatches[:10])
