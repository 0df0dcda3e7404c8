"""Property tests (hypothesis) of the production formats (Qwen-Bailian, OpenAI request
logs) and compressed files: on near-valid lines the reader yields TraceRequests or stops
with one line `path:line: ...`, nothing else (tests/test_fuzz_reader.py's checker)."""

from __future__ import annotations

import gzip
import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.errors import TraceError
from engine.trace.reader import TraceReader
from tests.test_fuzz import SLOW_OK
from tests.test_fuzz_reader import JSON_VALUES, TEXT, WRONG, _maybe_wrong, check_reader

EXAMPLES = 150  # each

HUGE = 10**400  # JSON allows it; a float does not


@st.composite
def bailian_line(draw, tbs: int) -> dict:
    n = draw(st.integers(1, 40))
    need = -(-n // tbs)
    obj = {
        "chat_id": draw(st.integers(0, 30)),
        "parent_chat_id": draw(st.one_of(st.just(-1), st.integers(-2, 30))),
        "timestamp": draw(st.one_of(st.floats(0, 1e6), st.integers(0, 10**6))),
        "input_length": n,
        "output_length": draw(st.integers(0, 20)),
        "type": draw(st.sampled_from(["text", "search", "image", "file"])),
        "turn": draw(st.integers(0, 5)),
        "hash_ids": draw(st.lists(st.integers(0, 50), min_size=need, max_size=need)),
    }
    for key in draw(st.lists(st.sampled_from(sorted(obj)), max_size=2)):  # break a field or two
        if draw(st.booleans()):
            obj.pop(key, None)
        else:
            obj[key] = draw(st.one_of(WRONG, JSON_VALUES, st.just(HUGE)))
    if draw(st.booleans()):
        obj[draw(TEXT)] = draw(JSON_VALUES)  # an extra field: ignored
    return obj


CONTENT = st.one_of(TEXT, st.none(), st.lists(st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "text", "image_url"]), "text": _maybe_wrong(TEXT)}), max_size=2))
MESSAGES = st.lists(st.fixed_dictionaries(
    {"role": _maybe_wrong(st.sampled_from(["user", "assistant", "system"])), "content": _maybe_wrong(CONTENT)},
    optional={"tool_calls": JSON_VALUES}), max_size=3)
BODY = st.fixed_dictionaries({"model": _maybe_wrong(st.sampled_from(["m", "lora-a"]))}, optional={
    "messages": _maybe_wrong(MESSAGES),
    "prompt": _maybe_wrong(st.one_of(TEXT, st.lists(st.integers(-1, 2**31), max_size=3),
                                     st.lists(TEXT, max_size=2))),
    "max_tokens": _maybe_wrong(st.integers(-1, 50)),
    "max_completion_tokens": _maybe_wrong(st.integers(-1, 50)),
    "cache_salt": _maybe_wrong(st.sampled_from(["a", "b/c", ""])),
    "temperature": JSON_VALUES,
})
RESPONSE = st.one_of(JSON_VALUES, st.fixed_dictionaries({}, optional={
    "choices": _maybe_wrong(st.lists(st.fixed_dictionaries({}, optional={
        "message": _maybe_wrong(st.fixed_dictionaries({"content": _maybe_wrong(TEXT)})),
        "text": _maybe_wrong(TEXT)}), max_size=2)),
    "usage": _maybe_wrong(st.fixed_dictionaries({"completion_tokens": _maybe_wrong(st.integers(-1, 9))})),
}))


@st.composite
def openai_line(draw, tbs: int) -> dict:
    body = draw(BODY)
    if not draw(st.booleans()):
        return body
    obj = {"body": _maybe_wrong(st.just(body))}
    obj = draw(st.fixed_dictionaries({"body": _maybe_wrong(st.just(body))}, optional={
        "timestamp": st.one_of(st.floats(-10, 1e6), st.integers(-10, 10**6),
                               st.sampled_from(["2025-01-01T00:00:00Z", "2025-01-01", "later"]),
                               st.just(HUGE), WRONG),
        "custom_id": _maybe_wrong(st.sampled_from(["a", "b", "c"])),
        "response": RESPONSE,
    }))
    return obj


def lines_file(line):
    @st.composite
    def build(draw) -> tuple[bytes, int]:
        tbs = draw(st.integers(1, 8))
        lines = draw(st.lists(line(tbs), min_size=1, max_size=4))
        return b"".join(json.dumps(o).encode() + b"\n" for o in lines), tbs
    return build()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=SLOW_OK)
@given(lines_file(bailian_line))
def test_bailian_lines(tmp_path_factory, case):
    check_reader(tmp_path_factory.mktemp("b") / "t.jsonl", *case)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=SLOW_OK)
@given(lines_file(openai_line))
@example((b'{"model": "m", "prompt": "a"}\n{"timestamp": 1' + b"0" * 400 + b', "body": {"model": "m", "prompt": "b"}}\n', 4))
def test_openai_lines(tmp_path_factory, case):
    check_reader(tmp_path_factory.mktemp("o") / "t.jsonl", *case)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=SLOW_OK)
@given(lines_file(bailian_line), st.integers(0, 400))
def test_cut_gzip(tmp_path_factory, case, cut):
    """A gzipped trace cut anywhere: requests up to the cut, or one line naming where."""
    data, tbs = case
    whole = gzip.compress(data)
    path = tmp_path_factory.mktemp("g") / "t.jsonl.gz"
    path.write_bytes(whole[: max(1, len(whole) - cut)])
    try:
        got = list(TraceReader(path, trace_block_size=tbs))
    except TraceError as err:
        assert str(err).startswith(f"{path}:") and "\n" not in str(err), str(err)
        return
    # Read to the end: the requests are exactly those of the uncompressed file.
    plain = path.with_suffix("")
    plain.write_bytes(data)
    assert cut == 0 or got
    assert [r.prompt_token_ids for r in got] == [r.prompt_token_ids for r in TraceReader(plain, trace_block_size=tbs)]


def test_huge_native_arrival_time_is_one_line(tmp_path):
    check_reader(tmp_path / "t.jsonl", b'{"prompt_token_ids": [1], "arrival_time": 1' + b"0" * 400 + b"}\n", 4)
