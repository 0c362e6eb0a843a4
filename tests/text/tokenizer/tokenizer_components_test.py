"""Each supported tokenizer.json component against Hugging Face `tokenizers`: variants of a
small trained byte-level BPE with other normalizers (NFC/NFD/NFKC/NFKD, Lowercase, Replace,
Prepend, Strip, StripAccents), pre-tokenizers (Split with every behaviour and invert, string
patterns, Digits, ByteLevel with use_regex / add_prefix_space, ByteLevel before a Split), a
TemplateProcessing post-processor, ignore_merges, and added tokens with lstrip / rstrip /
single_word / normalized. Identical ids and decoded text on a varied corpus."""

import copy
import json
import os
import subprocess
import sys

import pytest
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_corpus  # noqa: E402

EXE = os.environ.get("M2FP4_EXE", "")

BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}


def split(pattern, behavior, invert=False, kind="Regex"):
    return {"type": "Split", "pattern": {kind: pattern}, "behavior": behavior, "invert": invert}


def with_pre(*steps):
    return {"pre_tokenizer": {"type": "Sequence", "pretokenizers": list(steps)}}


def variants(base):
    qwen_split = base["pre_tokenizer"]["pretokenizers"][0]
    out = {
        "nfc": {"normalizer": {"type": "NFC"}},
        "nfd": {"normalizer": {"type": "NFD"}},
        "nfkc": {"normalizer": {"type": "NFKC"}},
        "nfkd": {"normalizer": {"type": "NFKD"}},
        "strip_accents_lowercase": {"normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFD"}, {"type": "StripAccents"}, {"type": "Lowercase"}]}},
        "lowercase": {"normalizer": {"type": "Lowercase"}},
        "replace_string": {"normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}},
        "replace_regex": {"normalizer": {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "}},
        "prepend": {"normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"}, {"type": "NFKC"}]}},
        "strip_both": {"normalizer": {"type": "Strip", "strip_left": True, "strip_right": True}},
        "strip_left": {"normalizer": {"type": "Strip", "strip_left": True, "strip_right": False}},
        "split_removed": with_pre(split("\\s+", "Removed"), BYTE_LEVEL),
        "split_merged_previous": with_pre(split("\\p{P}", "MergedWithPrevious"), BYTE_LEVEL),
        "split_merged_next": with_pre(split("\\p{P}", "MergedWithNext"), BYTE_LEVEL),
        "split_contiguous": with_pre(split("\\d|\\s", "Contiguous"), BYTE_LEVEL),
        "split_invert": with_pre(split("[a-z]+", "Isolated", invert=True), BYTE_LEVEL),
        "split_invert_merged": with_pre(split("\\s", "MergedWithPrevious", invert=True), BYTE_LEVEL),
        "split_string": with_pre(split(", ", "Isolated", kind="String"), qwen_split, BYTE_LEVEL),
        "split_string_special_chars": with_pre(split("(.)", "Removed", kind="String"), BYTE_LEVEL),
        "digits_individual": with_pre({"type": "Digits", "individual_digits": True}, qwen_split, BYTE_LEVEL),
        "digits_contiguous": with_pre({"type": "Digits", "individual_digits": False}, BYTE_LEVEL),
        "gpt2_byte_level": {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True,
                                              "trim_offsets": True, "use_regex": True}},
        "byte_level_regex": {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                                               "trim_offsets": True, "use_regex": True}},
        "byte_level_then_split": with_pre({"type": "ByteLevel", "add_prefix_space": False,
                                           "trim_offsets": False, "use_regex": True},
                                          split("\u0120", "MergedWithNext", kind="String")),
        "no_pre_tokenizer": {"pre_tokenizer": None},
        "ignore_merges": {"model": dict(base["model"], ignore_merges=True)},
        "template": {"post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "]~!b[", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[e~[", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {
                "]~!b[": {"id": "]~!b[", "ids": [base["added_tokens"][0]["id"]], "tokens": ["]~!b["]},
                "[e~[": {"id": "[e~[", "ids": [base["added_tokens"][1]["id"]], "tokens": ["[e~["]}}}},
    }
    # Added-token options, with a Lowercase normalizer so that `normalized` matters.
    added = copy.deepcopy(base["added_tokens"])
    by_content = {t["content"]: t for t in added}
    by_content["<think>"]["lstrip"] = True
    by_content["</think>"]["rstrip"] = True
    by_content["<minimax:tool_call>"]["single_word"] = True
    next_id = max(t["id"] for t in added) + 1
    for k, (content, special, normalized, single_word) in enumerate([
            ("Hello", False, True, False), ("WORLD", True, False, False), ("ai", False, True, True),
            ("(.*)", False, False, False), ("  ", False, True, False)]):
        added.append({"id": next_id + k, "content": content, "single_word": single_word,
                      "lstrip": False, "rstrip": False, "normalized": normalized, "special": special})
    out["added_token_options"] = {"added_tokens": added, "normalizer": {"type": "Lowercase"}}
    return out


def run_m2fp4(model_dir, inputs, tmp_path):
    path = tmp_path / "in.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for item in inputs:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    proc = subprocess.run([EXE, "tokenize", "--model", str(model_dir), "--json", "--decode",
                           "--file", str(path)], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return [json.loads(line) for line in proc.stdout.decode("utf-8").split("\n")[:-1]]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    assert EXE and os.path.exists(EXE)
    out = tmp_path_factory.mktemp("base")
    proc = subprocess.run([EXE, "tokenize", "--train-tiny", "1500", "--out", str(out)],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    with open(out / "tokenizer.json", encoding="utf-8") as f:
        return json.load(f)


def test_components_match_hf(base, tmp_path):
    specials = [t["content"] for t in base["added_tokens"]] + ["Hello", "WORLD", "ai", "(.*)"]
    texts = tokenizer_corpus.corpus(specials, seed=77, big_bytes=1 << 16)
    texts += ["Hello hello HELLO world WORLD ai said Ai, 'ai' rain <think>x</think>  y",
              "  padded  ", "a , b , c", "(.) (.)(.)", "Ｆｕｌｌｗｉｄｔｈ ﬁ ①②", "İstanbul ΣΑΣ"]
    inputs = [{"text": t, "add_special_tokens": i % 2 == 0} for i, t in enumerate(texts)]
    failures = []
    for name, change in variants(base).items():
        spec = copy.deepcopy(base)
        spec.update(change)
        d = tmp_path / name
        d.mkdir()
        with open(d / "tokenizer.json", "w", encoding="utf-8") as f:
            json.dump(spec, f, ensure_ascii=False)
        hf = Tokenizer.from_file(str(d / "tokenizer.json"))
        results = run_m2fp4(d, inputs, tmp_path)
        bad = 0
        for item, got in zip(inputs, results):
            want = hf.encode(item["text"], add_special_tokens=item["add_special_tokens"]).ids
            ok = got["ids"] == want
            ok = ok and got["text"] == hf.decode(want, skip_special_tokens=False)
            ok = ok and got["text_skip_special"] == hf.decode(want, skip_special_tokens=True)
            if not ok:
                bad += 1
                if bad <= 2:
                    failures.append(f"{name}: {item['text'][:60]!r}: m2fp4 {got['ids'][:12]} "
                                    f"hf {want[:12]}")
        if bad:
            failures.append(f"{name}: {bad} of {len(inputs)} texts differ")
    assert not failures, "\n".join(failures)
