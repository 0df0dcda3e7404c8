"""--chat-template: simple, a .jinja file (sandboxed as transformers renders one), the
tokenizer's own template; where a later turn stops extending the previous one, tested with
a template of our own that drops <think>…</think> from earlier assistant turns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import TraceError, UserError
from engine.trace.reader import TraceReader, read_trace
from engine.trace.tokenize import load_tokenizer

# Like Qwen3's: an assistant message followed by more of the conversation loses its
# reasoning; the last one (the reply just generated) keeps it.
THINK_DROPPING = """\
{%- for m in messages -%}
{%- set content = m['content'] -%}
{%- if m['role'] == 'assistant' and not loop.last and '</think>' in content -%}
{%- set content = content.split('</think>')[-1] -%}
{%- endif -%}
<|{{ m['role'] }}|>
{{ content }}<|end|>
{% endfor -%}
{%- if add_generation_prompt -%}<|assistant|>{{ '\n' }}{%- endif -%}
"""
Q1, R1, Q2 = "What is 2+2?", "<think>Add them.</think>4", "And 3+3?"


def conversation(tmp_path: Path, name: str = "chat.jsonl") -> Path:
    lines = [
        {"request_id": "t0", "conversation_id": "c", "turn": 0,
         "messages": [{"role": "user", "content": Q1}], "output": R1},
        {"request_id": "t1", "conversation_id": "c", "turn": 1,
         "messages": [{"role": "user", "content": Q1}, {"role": "assistant", "content": R1},
                      {"role": "user", "content": Q2}], "output": "6"},
    ]
    p = tmp_path / name
    p.write_text("".join(json.dumps(o) + "\n" for o in lines))
    return p


def template_file(tmp_path: Path, text: str = THINK_DROPPING) -> Path:
    p = tmp_path / "think.jinja"
    p.write_text(text)
    return p


def hf_dir(tmp_path: Path, chat_template: str | None) -> Path:
    """A transformers-loadable tokenizer directory built from GPT-2's files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from engine.trace.tokenize import _gpt2_files

    d = tmp_path / "tok"
    d.mkdir()
    hf = Tokenizer(models.BPE.from_file(*_gpt2_files()))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.save(str(d / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast"}
    if chat_template is not None:
        config["chat_template"] = chat_template
    (d / "tokenizer_config.json").write_text(json.dumps(config))
    return d


# The texts the template renders, written out by hand.
# Each marker ends in a newline, as real templates' do, so GPT-2's BPE never merges a
# marker with the text after it.
TURN0_PROMPT = f"<|user|>\n{Q1}<|end|>\n<|assistant|>\n"
TURN0_WHOLE = f"<|user|>\n{Q1}<|end|>\n<|assistant|>\n{R1}<|end|>\n"
TURN1_PROMPT = f"<|user|>\n{Q1}<|end|>\n<|assistant|>\n4<|end|>\n<|user|>\n{Q2}<|end|>\n<|assistant|>\n"


def expected_break() -> int:
    tok = load_tokenizer()
    before, after = tok.encode(TURN0_WHOLE), tok.encode(TURN1_PROMPT)
    return next(i for i, (x, y) in enumerate(zip(before, after)) if x != y)


def test_think_dropping_template_file_breaks_the_second_turn(tmp_path):
    tok = load_tokenizer()
    reader = TraceReader(conversation(tmp_path), chat_template=str(template_file(tmp_path)))
    a, b = reader
    assert a.prompt_token_ids == tuple(tok.encode(TURN0_PROMPT)) and a.text == TURN0_PROMPT
    # The reply is what the template renders after the generation prompt, end marker included.
    assert a.prompt_token_ids + a.output_token_ids == tuple(tok.encode(TURN0_WHOLE))
    assert b.prompt_token_ids == tuple(tok.encode(TURN1_PROMPT))
    assert (a.template_checked, a.template_break) == (False, None)
    brk = b.template_break
    assert b.template_checked and brk is not None
    # Right where the reply began: the markers end in a newline, so no token spans the cut.
    assert brk.position == expected_break() == len(a.prompt_token_ids)
    assert brk.previous_tokens == len(tok.encode(TURN0_WHOLE))
    assert "<think>" in brk.expected_text and "<think>" not in brk.found_text
    assert brk.found_text.startswith("4<|end|>") and brk.before.endswith("<|assistant|>\n")


def test_simple_template_never_breaks(tmp_path):
    a, b = read_trace(conversation(tmp_path))
    assert not b.template_checked and b.template_break is None  # nothing to check
    # By construction: turn 1's prompt starts with turn 0's prompt and reply.
    whole = a.prompt_token_ids + a.output_token_ids
    assert b.prompt_token_ids[: len(whole)] == whole


def test_a_template_that_keeps_history_does_not_break(tmp_path):
    keeping = THINK_DROPPING.replace("and '</think>' in content", "and false")
    _, b = read_trace(conversation(tmp_path), chat_template=str(template_file(tmp_path, keeping)))
    assert b.template_checked and b.template_break is None


def test_tokenizer_template_matches_the_same_file(tmp_path):
    """transformers' apply_chat_template on the tokenizer's own template, and our sandbox
    on the same text as a file: the same tokens, the same break."""
    d = hf_dir(tmp_path, THINK_DROPPING)
    trace = conversation(tmp_path)
    own = list(read_trace(trace, tokenizer_name=str(d), chat_template="tokenizer"))
    filed = list(read_trace(trace, tokenizer_name=str(d), chat_template=str(template_file(tmp_path))))
    assert [r.prompt_token_ids for r in own] == [r.prompt_token_ids for r in filed]
    assert [r.output_token_ids for r in own] == [r.output_token_ids for r in filed]
    assert own[1].template_break == filed[1].template_break
    assert own[1].template_break.position == expected_break()


@pytest.mark.parametrize("chat_template, expected", [
    ("tokenizer", "has no chat template (tokenizer_config.json's chat_template or chat_template.jinja)"),
])
def test_tokenizer_without_a_template_is_one_line(tmp_path, chat_template, expected):
    d = hf_dir(tmp_path, None)
    with pytest.raises(UserError) as ei:
        list(read_trace(conversation(tmp_path), tokenizer_name=str(d), chat_template=chat_template))
    assert str(ei.value) == f"--chat-template tokenizer: {d} {expected}"


def test_default_tokenizer_has_no_template(tmp_path):
    with pytest.raises(UserError) as ei:
        list(read_trace(conversation(tmp_path), chat_template="tokenizer"))
    assert "\n" not in str(ei.value)
    assert str(ei.value).startswith("--chat-template tokenizer: the default tokenizer has no chat template")


def test_malformed_template_names_the_file_and_line(tmp_path):
    bad = template_file(tmp_path, "{% for m in messages %}\n{{ m.content }\n")
    with pytest.raises(UserError) as ei:
        TraceReader(conversation(tmp_path), chat_template=str(bad))  # before any request
    msg = str(ei.value)
    assert msg.startswith(f"{bad}:2: chat template syntax error: ") and "\n" not in msg
    with pytest.raises(UserError, match="no such file"):
        TraceReader(conversation(tmp_path), chat_template=str(tmp_path / "missing.jinja"))


@pytest.mark.parametrize("text, says", [
    ("{{ raise_exception('roles must alternate') }}", "TemplateError: roles must alternate"),
    # The sandbox: no way from a template to Python's classes (and so to os or subprocess).
    ("{{ ().__class__.__base__.__subclasses__() }}", "SecurityError: access to attribute '__class__'"),
    ("{{ messages.append(1) }}", "SecurityError: access to attribute 'append' of 'list' object is unsafe"),
])
def test_a_template_failing_at_render_is_the_trace_line(tmp_path, text, says):
    trace = conversation(tmp_path)
    t = template_file(tmp_path, text)
    with pytest.raises(TraceError) as ei:
        list(read_trace(trace, chat_template=str(t)))
    assert str(ei.value).startswith(f"{trace}:1: chat template {t}: {says}")


def test_remote_code_in_a_tokenizer_directory_never_runs(tmp_path):
    d = hf_dir(tmp_path, THINK_DROPPING)
    marker = tmp_path / "ran"
    (d / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n"
                               "from transformers import PreTrainedTokenizerFast as EvilTokenizer\n")
    config = json.loads((d / "tokenizer_config.json").read_text())
    config.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": [None, "evil.EvilTokenizer"]})
    (d / "tokenizer_config.json").write_text(json.dumps(config))
    try:
        list(read_trace(conversation(tmp_path), tokenizer_name=str(d), chat_template="tokenizer"))
    except UserError as err:
        assert "\n" not in str(err)
    assert not marker.exists()


def test_vllm_hits_stop_at_the_break_and_the_report_counts_it(tmp_path, capsys):
    """Replayed headless on vLLM's manager: turn 1 hits the previous turn's full blocks up
    to the break under the <think>-dropping template, and all of them under the simple
    one; the report and the JSON count the break."""
    from tui.cli import main

    bs = 4
    trace = conversation(tmp_path)
    for template in (str(template_file(tmp_path)), "simple"):
        requests = list(read_trace(trace, chat_template=template))
        out = tmp_path / "r.json"
        code = main([str(trace), "--headless", "--no-progress", "--json", str(out), "--force",
                     "--block-size", str(bs), "--chat-template", template])
        report = capsys.readouterr().out
        doc = json.loads(out.read_text())
        assert code == 0 and doc["settings"]["chat_template"] == template
        a, b = requests
        whole = len(a.prompt_token_ids) + len(a.output_token_ids)
        rows = doc["requests"]
        if template == "simple":  # the shared prefix is all of turn 0: prompt and reply
            assert rows[1]["hit_tokens"] == whole // bs * bs
            assert doc["chat_template"] == {"checked_turns": 0, "breaks": 0}
            assert "Chat template" not in report
            continue
        brk = rows[1]["template_break"]
        assert brk == b.template_break._asdict() and brk["position"] == expected_break()
        assert rows[1]["hit_tokens"] == brk["position"] // bs * bs < whole // bs * bs
        assert doc["chat_template"] == {"checked_turns": 1, "breaks": 1}
        assert "Chat template (prefix-tui's check, not vLLM's)" in report
        assert "1 / 1" in report.split("Chat template")[1]


def test_the_break_line_is_safe_text():
    from engine.model import TemplateBreak
    from tui.widgets.request_panel import template_break_line

    brk = TemplateBreak(5, 9, 1, None, "\x1b[31mred", "[bold]x[/bold]", "")
    line = template_break_line(brk, "", 500).plain
    assert "\x1b" not in line and "␛[31mred" in line and "[bold]x[/bold]" in line
    assert line.startswith("chat template: leaves the previous turn at token 5 of 9") and "(end)" in line


TOOLS_TEMPLATE = """\
{%- if tools %}<|tools|>
{{ tools | tojson }}<|end|>
{% endif -%}
{%- for m in messages -%}
<|{{ m.role }}|>
{{ m.content }}{% if m.tool_calls %}{{ m.tool_calls | tojson }}{% endif %}<|end|>
{% endfor -%}
{%- if add_generation_prompt %}<|assistant|>
{% endif -%}
"""


def test_openai_tools_and_tool_calls_reach_a_jinja_template(tmp_path):
    tool = {"type": "function", "function": {"name": "add", "parameters": {}}}
    call = [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{}"}}]
    body = {"model": "m", "tools": [tool], "messages": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": None, "tool_calls": call},
        {"role": "tool", "tool_call_id": "c1", "content": "4"}]}
    trace = tmp_path / "log.jsonl"
    trace.write_text(json.dumps(body) + "\n")
    t = template_file(tmp_path, TOOLS_TEMPLATE)
    (r,) = read_trace(trace, chat_template=str(t))
    assert r.text == (f"<|tools|>\n{json.dumps([tool])}<|end|>\n<|user|>\n2+2?<|end|>\n"
                      f"<|assistant|>\n{json.dumps(call)}<|end|>\n<|tool|>\n4<|end|>\n<|assistant|>\n")
    # The earlier turn (up to the tool call) is re-rendered with the same tools: no break.
    assert r.template_checked and r.template_break is None
    d = hf_dir(tmp_path, TOOLS_TEMPLATE)
    (own,) = read_trace(trace, tokenizer_name=str(d), chat_template="tokenizer")
    (filed,) = read_trace(trace, tokenizer_name=str(d), chat_template=str(t))
    assert own.prompt_token_ids == filed.prompt_token_ids and own.text == r.text
