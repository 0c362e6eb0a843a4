"""m2fp4's tokenizer against Hugging Face `tokenizers` (the reference implementation) on the
real Qwen3, DeepSeek-V3 and gpt-oss tokenizer.json files: identical ids, identical decoded
text (with and without special tokens), and streaming decode that adds up to the same text
while never holding back more than one incomplete character. Zero mismatches allowed.
"""

import json
import os
import random
import subprocess
import sys

import pytest
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_corpus  # noqa: E402

EXE = os.environ.get("M2FP4_EXE", "")
SHARED = os.environ.get("M2FP4_SHARED_DIR", os.path.join(os.path.dirname(__file__), "../../../shared"))
NAMES = ["qwen3", "deepseek-v3", "gpt-oss"]


def model_dir(name):
    return os.path.join(SHARED, "tokenizers", name)


def run_m2fp4(model, inputs, tmp_path, extra=()):
    path = tmp_path / "inputs.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for item in inputs:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    proc = subprocess.run(
        [EXE, "tokenize", "--model", model, "--json", "--decode", "--file", str(path), *extra],
        capture_output=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    # Split on "\n" only: str.splitlines would also split inside texts at U+2028, U+0085...
    lines = proc.stdout.decode("utf-8").split("\n")
    assert lines[-1] == ""
    lines.pop()
    assert len(lines) == len(inputs)
    return [json.loads(line) for line in lines]


def byte_level_alphabet():
    """GPT-2's byte -> character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def short(s, n=120):
    return repr(s if len(s) <= n else s[:n] + "...")


@pytest.fixture(scope="module", params=NAMES)
def reference(request):
    assert EXE and os.path.exists(EXE), "M2FP4_EXE must point at the built m2fp4 binary"
    d = model_dir(request.param)
    return request.param, d, Tokenizer.from_file(os.path.join(d, "tokenizer.json"))


def test_encode_and_decode_match_hf(reference, tmp_path):
    name, d, hf = reference
    specials = [t.content for t in hf.get_added_tokens_decoder().values()]
    texts = tokenizer_corpus.corpus(specials)
    assert max(len(t.encode()) for t in texts) >= 1 << 20  # the 1 MB text is in
    inputs = [{"text": t, "add_special_tokens": i % 2 == 1} for i, t in enumerate(texts)]
    results = run_m2fp4(d, inputs, tmp_path)

    mismatches = []
    tokens = 0
    for item, got in zip(inputs, results):
        want = hf.encode(item["text"], add_special_tokens=item["add_special_tokens"]).ids
        tokens += len(want)
        if got["ids"] != want:
            first = next((k for k, (a, b) in enumerate(zip(got["ids"], want)) if a != b),
                         min(len(got["ids"]), len(want)))
            mismatches.append(f"ids differ at {first} for {short(item['text'])}: "
                              f"m2fp4 {got['ids'][first:first + 8]} hf {want[first:first + 8]}")
            continue
        for key, skip in (("text", False), ("text_skip_special", True)):
            want_text = hf.decode(want, skip_special_tokens=skip)
            if got[key] != want_text:
                mismatches.append(f"{key} differs for {short(item['text'])}: "
                                  f"{short(got[key])} vs {short(want_text)}")
        if "".join(got["stream"]) != got["text"]:
            mismatches.append(f"stream chunks do not add up for {short(item['text'])}")
    print(f"{name}: {len(texts)} texts, "
          f"{sum(len(t.encode()) for t in texts)} bytes, {tokens} tokens")
    assert not mismatches, f"{len(mismatches)} mismatches, first: " + "\n".join(mismatches[:10])


def test_decode_of_arbitrary_ids_matches_hf(reference, tmp_path):
    """Random id sequences: broken UTF-8 from lone byte tokens, special tokens, anything."""
    name, d, hf = reference
    rng = random.Random(99)
    alphabet = byte_level_alphabet()
    byte_ids = [hf.token_to_id(alphabet[b]) for b in range(256)]
    high_bytes = [byte_ids[b] for b in range(0x80, 0x100)]
    added_ids = list(hf.get_added_tokens_decoder().keys())
    size = hf.get_vocab_size(with_added_tokens=True)
    valid = lambda i: hf.id_to_token(i) is not None  # noqa: E731
    sequences = []
    for _ in range(300):
        seq = []
        for _ in range(rng.randint(1, 40)):
            r = rng.random()
            if r < 0.4:
                seq.append(rng.choice(high_bytes))
            elif r < 0.55:
                seq.append(rng.choice(added_ids))
            else:
                i = rng.randrange(size)
                if valid(i):
                    seq.append(i)
        if seq:
            sequences.append(seq)
    # The bytes of multi-byte characters fed one byte token at a time.
    for text in ["héllo 你好 😀👨‍👩‍👧 한국어", "€𝄞\u0301", "\ufffd\x00\x7f"]:
        sequences.append([byte_ids[b] for b in text.encode("utf-8")])
    results = run_m2fp4(d, [{"ids": s} for s in sequences], tmp_path)

    mismatches = []
    for seq, got in zip(sequences, results):
        for key, skip in (("text", False), ("text_skip_special", True)):
            want = hf.decode(seq, skip_special_tokens=skip)
            if got[key] != want:
                mismatches.append(f"{key} of {seq[:10]}: {short(got[key])} vs {short(want)}")
        chunks = got["stream"]
        assert len(chunks) == len(seq) + 1  # one per id, then the flush
        if "".join(chunks) != got["text"]:
            mismatches.append(f"stream of {seq[:10]} does not add up")
        # After each id, the text so far is everything Hugging Face decodes from the prefix,
        # minus at most the one incomplete character it would show as U+FFFD.
        emitted = ""
        for k in range(len(seq)):
            emitted += chunks[k]
            prefix = hf.decode(seq[:k + 1], skip_special_tokens=False)
            if not (prefix == emitted or prefix == emitted + "\ufffd"):
                mismatches.append(f"stream after {k + 1} ids of {seq[:10]}: "
                                  f"{short(emitted)} vs {short(prefix)}")
                break
    assert not mismatches, f"{len(mismatches)} mismatches, first: " + "\n".join(mismatches[:10])


def test_config_bos_eos(reference):
    name, d, hf = reference
    with open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    proc = subprocess.run([EXE, "tokenize", "--model", d, "--json", "--config"],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    got = json.loads(proc.stdout)

    def content(v):
        return v["content"] if isinstance(v, dict) else v

    for key in ("bos_token", "eos_token"):
        want = content(config.get(key))
        assert got[key] == want
        assert got[key.replace("token", "id")] == (hf.token_to_id(want) if want else -1)
    assert got["add_bos_token"] == bool(config.get("add_bos_token", False))
    assert got["vocab_size"] == max(hf.get_vocab(with_added_tokens=True).values()) + 1
