"""README claims that can drift from the code: the inspector's glyphs, and which hit rate a
benchmark line quotes (issue 14: `s` vs `S` in serve mode; 4.50 % read as the cumulative)."""

from __future__ import annotations

import re

from tests.conftest import ROOT
from tui.widgets.palette import HELD_SHARED_GLYPH

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_held_and_shared_blocks_have_one_glyph_everywhere():
    # `S` is a prefix hit on a block another sequence holds; held and shared is `s`.
    said = re.findall(r"`(\w)` held and shared", README)
    assert said and set(said) == {HELD_SHARED_GLYPH}
    assert "`S` shared with another live sequence" not in README


def test_every_quoted_hit_rate_says_which_one():
    for line in README.splitlines():
        if re.search(r"hit rate \d", line):
            assert "cumulative" in line or "last 1,000" in line or "last-1,000" in line, line


def test_production_format_examples_parse_as_their_format(tmp_path):
    from engine.trace.reader import TraceReader

    section = README.split("### Production trace formats", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```json\n(.*?)```", section, re.S)
    expected = ["mooncake", "bailian", "openai"]
    assert len(blocks) == len(expected)
    for i, (block, fmt) in enumerate(zip(blocks, expected)):
        p = tmp_path / f"{i}.jsonl"
        p.write_text(block, encoding="utf-8")
        reader = TraceReader(p, lora_names=("support-lora",))
        requests = list(reader)
        assert reader.format == fmt and len(requests) == len(block.strip().splitlines())
        assert reader.ignored_fields == {}
    assert requests[1].lora_name == "support-lora" and requests[0].cache_salt == "team-a"
