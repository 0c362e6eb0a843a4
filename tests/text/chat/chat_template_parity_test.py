"""m2fp4's chat-template renderer against transformers' apply_chat_template(tokenize=False).

The reference is transformers itself (PyPI; jinja2 configured by transformers: sandboxed,
trim_blocks, lstrip_blocks, its own tojson, raise_exception, loop controls, {% generation %}),
so the context (messages with None keys dropped and reasoning fields aliased, tools, special
tokens, extra kwargs) is whatever transformers builds. Templates: the chat_template of every
tokenizer_config.json under $M2FP4_SHARED_DIR/tokenizers (rendered by m2fp4 through --model, so
template discovery and special tokens are checked too) and templates/minimax-m2.jinja (through
--template, against a tokenizer without special tokens). Every conversation of
chat_template_corpus.py is rendered with add_generation_prompt off and on and with each extra
context; outputs must be byte-identical, and where transformers raises, m2fp4 must fail with a
template error.
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from chat_template_corpus import CONVERSATIONS, EXTRA_CONTEXTS  # noqa: E402

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

EXE = os.environ.get("M2FP4_EXE", "")
SHARED = pathlib.Path(os.environ.get("M2FP4_SHARED_DIR", ""))


def model_dirs_with_templates():
    dirs = []
    for config in sorted((SHARED / "tokenizers").glob("*/tokenizer_config.json")):
        if json.loads(config.read_text()).get("chat_template"):
            dirs.append(config.parent)
    return dirs


TEMPLATE_IDS = [f"model:{d.name}" for d in model_dirs_with_templates()] + ["file:minimax-m2.jinja"]


@pytest.fixture(scope="module")
def hosts():
    """template id -> (tokenizer used as the reference, chat_template override or None)."""
    out = {}
    for d in model_dirs_with_templates():
        out[f"model:{d.name}"] = (transformers.AutoTokenizer.from_pretrained(str(d)), None)
    bare = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizers.Tokenizer(tokenizers.models.WordLevel({"a": 0}, unk_token="a"))
    )
    minimax = (SHARED / "templates" / "minimax-m2.jinja").read_text(encoding="utf-8")
    out["file:minimax-m2.jinja"] = (bare, minimax)
    return out


def reference(tokenizer, template, messages, tools, add_generation_prompt, context):
    kwargs = dict(context)
    if template is not None:
        kwargs["chat_template"] = template
    try:
        text = tokenizer.apply_chat_template(
            messages,
            tools=tools,
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
            **kwargs,
        )
        return True, text
    except Exception as e:  # a template error (TemplateError, TypeError, UndefinedError, ...)
        return False, f"{type(e).__name__}: {e}"


def m2fp4(template_id, messages, tools, add_generation_prompt, context, workdir):
    args = [EXE, "chat-template"]
    if template_id.startswith("model:"):
        args += ["--model", str(SHARED / "tokenizers" / template_id.split(":", 1)[1])]
    else:
        args += ["--template", str(SHARED / "templates" / template_id.split(":", 1)[1])]
    messages_file = workdir / "messages.json"
    messages_file.write_text(json.dumps(messages, ensure_ascii=False), encoding="utf-8")
    args += ["--messages", str(messages_file)]
    if tools is not None:
        tools_file = workdir / "tools.json"
        tools_file.write_text(json.dumps(tools, ensure_ascii=False), encoding="utf-8")
        args += ["--tools", str(tools_file)]
    if add_generation_prompt:
        args.append("--add-generation-prompt")
    if context:
        args += ["--context", json.dumps(context)]
    proc = subprocess.run(args, capture_output=True, timeout=30)
    if proc.returncode == 0:
        return True, proc.stdout.decode("utf-8")
    return False, proc.stderr.decode("utf-8", "replace")


def runs():
    for add_generation_prompt in (False, True):
        for context in EXTRA_CONTEXTS:
            yield add_generation_prompt, context


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
@pytest.mark.parametrize("name,messages,tools", CONVERSATIONS, ids=[c[0] for c in CONVERSATIONS])
def test_render_matches_transformers(hosts, template_id, name, messages, tools):
    assert EXE and os.path.exists(EXE), "M2FP4_EXE must point at the built m2fp4 binary"
    tokenizer, template = hosts[template_id]
    mismatches = []
    with tempfile.TemporaryDirectory() as tmp:
        for add_generation_prompt, context in runs():
            want_ok, want = reference(tokenizer, template, messages, tools, add_generation_prompt, context)
            got_ok, got = m2fp4(template_id, messages, tools, add_generation_prompt, context, pathlib.Path(tmp))
            where = f"add_generation_prompt={add_generation_prompt} context={context}"
            if want_ok and (not got_ok or got != want):
                mismatches.append(f"{where}\n  transformers: {want!r}\n  m2fp4:        {got!r}")
            elif not want_ok and (got_ok or "template line" not in got):
                mismatches.append(f"{where}\n  transformers raised {want}\n  m2fp4: {got!r}")
    assert not mismatches, "\n".join(mismatches)


def test_corpus_mostly_renders(hosts):
    """Guards against a vacuous parity test: most runs of every template must render."""
    with tempfile.TemporaryDirectory() as tmp:
        for template_id in TEMPLATE_IDS:
            tokenizer, template = hosts[template_id]
            rendered = set()
            total = ok_runs = 0
            for _, messages, tools in CONVERSATIONS:
                for add_generation_prompt, context in runs():
                    total += 1
                    ok, text = reference(tokenizer, template, messages, tools, add_generation_prompt, context)
                    if ok:
                        ok_runs += 1
                        rendered.add(text)
            # Extra contexts a template ignores render the same text, so distinct texts are
            # counted against the conversations, successful runs against all runs.
            assert ok_runs >= total // 4, f"{template_id}: only {ok_runs} of {total} runs render"
            assert len(rendered) >= len(CONVERSATIONS), f"{template_id}: only {len(rendered)} distinct renders"
            assert len(model_dirs_with_templates()) >= 2


def test_minimax_generation_prompt_and_tools():
    """Spot checks of the MiniMax-M2 format (serving.md (c)) on m2fp4's own output."""
    messages = CONVERSATIONS[[c[0] for c in CONVERSATIONS].index("tool_call_dict_arguments")][1]
    tools = CONVERSATIONS[[c[0] for c in CONVERSATIONS].index("tool_call_dict_arguments")][2]
    with tempfile.TemporaryDirectory() as tmp:
        ok, text = m2fp4("file:minimax-m2.jinja", messages, tools, True, {}, pathlib.Path(tmp))
    assert ok, text
    assert text.startswith("]~!b[]~b]system\nYou can call tools.\n\n# Tools\n")
    assert '<tool>{"name": "get_weather", "description": ' in text
    assert (
        '<invoke name="get_weather">\n<parameter name="city">Paris</parameter>\n'
        '<parameter name="unit">celsius</parameter>\n<parameter name="days">3</parameter>\n</invoke>\n'
    ) in text
    assert text.endswith("]~b]ai\n<think>\n")
