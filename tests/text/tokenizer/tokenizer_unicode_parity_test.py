"""Every code point through m2fp4 and Hugging Face `tokenizers`: the three real tokenizers'
regexes (Unicode categories of Oniguruma's Unicode version, not PCRE2's older one), and each
normalizer (NFC/NFD/NFKC/NFKD as Hugging Face's Unicode 9.0 tables, Lowercase, StripAccents).
Identical ids and text for all of planes 0-3 and 14, and a sample of the others."""

import copy
import json
import os
import subprocess

import pytest
from tokenizers import Tokenizer

EXE = os.environ.get("M2FP4_EXE", "")
SHARED = os.environ.get("M2FP4_SHARED_DIR", os.path.join(os.path.dirname(__file__), "../../../shared"))

CODE_POINTS = [c for c in range(0x40000) if not 0xD800 <= c < 0xE000]
CODE_POINTS += list(range(0xE0000, 0xE0200)) + list(range(0x40000, 0x110000, 97))


def blocks(separator, size=1024):
    return [separator.join(chr(c) for c in CODE_POINTS[i:i + size])
            for i in range(0, len(CODE_POINTS), size)]


def run_m2fp4(model_dir, texts, tmp_path):
    path = tmp_path / "in.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps(t) + "\n")
    proc = subprocess.run([EXE, "tokenize", "--model", str(model_dir), "--json", "--decode",
                           "--file", str(path)], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return [json.loads(line) for line in proc.stdout.decode("utf-8").split("\n")[:-1]]


def first_difference(a, b):
    return next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


@pytest.mark.parametrize("name", ["qwen3", "deepseek-v3", "gpt-oss"])
def test_every_code_point_encodes_like_hf(name, tmp_path):
    assert EXE and os.path.exists(EXE)
    d = os.path.join(SHARED, "tokenizers", name)
    hf = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    texts = blocks("") + blocks(" ")
    results = run_m2fp4(d, texts, tmp_path)
    bad = []
    for text, got in zip(texts, results):
        want = hf.encode(text, add_special_tokens=False).ids
        if got["ids"] != want:
            k = first_difference(got["ids"], want)
            bad.append(f"block starting U+{ord(text[0]):04X}: at token {k} m2fp4 "
                       f"{got['ids'][k:k + 5]} hf {want[k:k + 5]}")
    assert not bad, f"{len(bad)} blocks differ: " + "\n".join(bad[:10])


NORMALIZERS = {
    "nfc": {"type": "NFC"},
    "nfd": {"type": "NFD"},
    "nfkc": {"type": "NFKC"},
    "nfkd": {"type": "NFKD"},
    "lowercase": {"type": "Lowercase"},
    "strip_accents": {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "StripAccents"}]},
}


def test_normalizers_on_every_code_point(tmp_path):
    assert EXE and os.path.exists(EXE)
    base_dir = tmp_path / "base"
    proc = subprocess.run([EXE, "tokenize", "--train-tiny", "300", "--out", str(base_dir)],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    with open(base_dir / "tokenizer.json", encoding="utf-8") as f:
        base = json.load(f)
    base["added_tokens"] = []
    base["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                             "use_regex": False}
    # Characters alone (separated) and next to each other (composition, reordering).
    texts = blocks(" ", 2048) + blocks("", 2048)
    failures = []
    for name, normalizer in NORMALIZERS.items():
        spec = copy.deepcopy(base)
        spec["normalizer"] = normalizer
        d = tmp_path / name
        d.mkdir()
        with open(d / "tokenizer.json", "w", encoding="utf-8") as f:
            json.dump(spec, f)
        hf = Tokenizer.from_file(str(d / "tokenizer.json"))
        for text, got in zip(texts, run_m2fp4(d, texts, tmp_path)):
            want = hf.normalizer.normalize_str(text)
            if got["text"] != want:
                k = first_difference(got["text"], want)
                failures.append(f"{name}: block starting U+{ord(text[0]):04X}: "
                                f"{got['text'][k:k + 3]!r} vs {want[k:k + 3]!r}")
    assert not failures, f"{len(failures)} blocks differ: " + "\n".join(failures[:10])
