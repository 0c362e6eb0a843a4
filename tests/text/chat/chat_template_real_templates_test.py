"""Real chat templates of many model families, rendered by m2fp4 and by transformers.

The templates are tests/text/chat/templates/*.jinja (where each came from: SOURCES.md) plus the
chat templates of the tokenizers in $M2FP4_SHARED_DIR/tokenizers and templates/. Every template is
rendered over every conversation of chat_template_corpus.py, with add_generation_prompt off and
on and with each extra context, by transformers' own renderer (what apply_chat_template runs:
_normalize_chat_messages, then render_jinja_template with its sandboxed jinja2 environment) and by
`m2fp4 chat-template --batch` (one process per template). The texts must be identical, and where
transformers raises, m2fp4 must report a template error for that render.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from chat_template_corpus import CONVERSATIONS, EXTRA_CONTEXTS  # noqa: E402

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
chat_template_utils = pytest.importorskip("transformers.utils.chat_template_utils")

EXE = os.environ.get("M2FP4_EXE", "")
SHARED = pathlib.Path(os.environ.get("M2FP4_SHARED_DIR", ""))
TEMPLATE_DIR = pathlib.Path(__file__).parent / "templates"

# Special tokens passed to the templates of the corpus folder (they have no tokenizer).
FILE_SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def shared_templates():
    """(id, source, special tokens) of the shared tokenizers' and templates' chat templates."""
    out = []
    for config_path in sorted((SHARED / "tokenizers").glob("*/tokenizer_config.json")):
        config = json.loads(config_path.read_text(encoding="utf-8"))
        jinja_path = config_path.parent / "chat_template.jinja"
        source = jinja_path.read_text(encoding="utf-8") if jinja_path.exists() else config.get("chat_template")
        if not isinstance(source, str):
            continue
        tokens = {}
        for name in SPECIAL_TOKEN_NAMES:
            token = config.get(name)
            if isinstance(token, dict):
                token = token.get("content")
            if isinstance(token, str):
                tokens[name] = token
        out.append((f"shared-tokenizer:{config_path.parent.name}", source, tokens))
    for path in sorted((SHARED / "templates").glob("*.jinja")):
        out.append((f"shared-template:{path.name}", path.read_text(encoding="utf-8"), {}))
    return out


def corpus_templates():
    out = [(p.name, p.read_text(encoding="utf-8"), FILE_SPECIAL_TOKENS) for p in sorted(TEMPLATE_DIR.glob("*.jinja"))]
    return out + shared_templates()


TEMPLATES = corpus_templates()


def jobs(special_tokens):
    """Every (conversation, add_generation_prompt, extra context) render of one template."""
    out = []
    for name, messages, tools in CONVERSATIONS:
        for add_generation_prompt in (False, True):
            for extra in EXTRA_CONTEXTS:
                out.append(
                    {
                        "name": name,
                        "messages": messages,
                        "tools": tools,
                        "add_generation_prompt": add_generation_prompt,
                        "context": {**special_tokens, **extra},
                    }
                )
    return out


def reference(source, job):
    try:
        rendered, _ = chat_template_utils.render_jinja_template(
            # apply_chat_template normalizes first (None-valued keys dropped), then renders.
            conversations=[chat_template_utils._normalize_chat_messages(job["messages"])],
            tools=job["tools"],
            chat_template=source,
            add_generation_prompt=job["add_generation_prompt"],
            **job["context"],
        )
        return True, rendered[0]
    except Exception as e:  # a template error (TemplateError, TypeError, UndefinedError, ...)
        return False, f"{type(e).__name__}: {e}"


def m2fp4_batch(source, batch, tmp_path):
    template_file = tmp_path / "template.jinja"
    template_file.write_text(source, encoding="utf-8")
    lines = [
        json.dumps({k: job[k] for k in ("messages", "tools", "add_generation_prompt", "context")}, ensure_ascii=False)
        for job in batch
    ]
    proc = subprocess.run(
        [EXE, "chat-template", "--template", str(template_file), "--batch", "-"],
        input="\n".join(lines).encode("utf-8"),
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    # Split on "\n" only: rendered text may hold other line separators (U+2028).
    results = [json.loads(line) for line in proc.stdout.decode("utf-8").split("\n") if line]
    assert len(results) == len(batch)
    return [(True, r["text"]) if "text" in r else (False, r["error"]) for r in results]


def test_corpus_size():
    assert len(TEMPLATES) >= 40, [t[0] for t in TEMPLATES]


@pytest.mark.parametrize("template_id,source,special_tokens", TEMPLATES, ids=[t[0] for t in TEMPLATES])
def test_template_matches_transformers(template_id, source, special_tokens, tmp_path):
    assert EXE and os.path.exists(EXE), "M2FP4_EXE must point at the built m2fp4 binary"
    batch = jobs(special_tokens)
    got = m2fp4_batch(source, batch, tmp_path)
    mismatches = []
    rendered = set()
    for job, (got_ok, got_text) in zip(batch, got):
        want_ok, want_text = reference(source, job)
        if want_ok:
            rendered.add(want_text)
        where = f"{job['name']} add_generation_prompt={job['add_generation_prompt']} context={job['context']}"
        if want_ok and (not got_ok or got_text != want_text):
            mismatches.append(f"{where}\n  transformers: {want_text!r}\n  m2fp4:        {got_text!r}")
        elif not want_ok and (got_ok or "template line" not in got_text):
            mismatches.append(f"{where}\n  transformers raised {want_text}\n  m2fp4: {got_text!r}")
    assert not mismatches, f"{len(mismatches)} of {len(batch)} differ:\n" + "\n".join(mismatches[:5])
    # Guards against a vacuous comparison: every template renders a good part of the corpus.
    assert len(rendered) >= 8, f"{template_id}: only {len(rendered)} distinct renders"
