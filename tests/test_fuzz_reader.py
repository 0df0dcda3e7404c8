"""Property tests (hypothesis) of the trace reader: on any bytes or JSON line it yields
TraceRequests or stops with a one-line TraceError `path:line: ...`, nothing else. Its
share of the fuzz budget is in tests/test_fuzz.py's BUDGET."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from engine.errors import TraceError
from engine.trace.reader import TraceReader
from tests.test_fuzz import budget, cdiv


# =========================================================================================
# The reader: either TraceRequests or one-line TraceError `path:...`, nothing else
# =========================================================================================

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 60000), st.integers(), st.integers(-2**70, 2**70),
    st.floats(), st.text(max_size=8),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=6), c, max_size=4)),
    max_leaves=4,
)
WRONG = st.one_of(  # cheap values of the wrong type for any field
    st.none(), st.booleans(), st.floats(), st.text(max_size=3), st.just([]), st.just({}),
    st.just([1, "2"]), st.integers(-(2**65), 2**65),
)
TOKEN_IDS = st.lists(st.one_of(st.integers(0, 60000), st.integers(-2, 2**31 + 2)), max_size=6)
TEXT = st.text(max_size=16)
MESSAGES = st.lists(
    st.fixed_dictionaries({"role": TEXT, "content": TEXT}, optional={"name": TEXT}), max_size=3
)


def _maybe_wrong(good):
    return st.one_of(good, good, good, WRONG)


@st.composite
def valid_native(draw):
    obj = {}
    key = draw(st.sampled_from(["prompt_token_ids", "prompt", "messages"]))
    obj[key] = draw({
        "prompt_token_ids": st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=8),
        "prompt": st.text(min_size=1, max_size=20),
        "messages": st.lists(st.fixed_dictionaries({"role": st.text(min_size=1, max_size=6),
                                                    "content": TEXT}), min_size=1, max_size=3),
    }[key])
    out = draw(st.sampled_from([None, "output_token_ids", "output", "output_len"]))
    if out:
        obj[out] = draw({"output_token_ids": st.lists(st.integers(0, 60000), max_size=5),
                         "output": TEXT, "output_len": st.integers(0, 50)}[out])
    if draw(st.booleans()):
        obj["request_id"] = draw(st.one_of(st.text(min_size=1, max_size=10), st.integers()))
    if draw(st.booleans()):
        obj["arrival_time"] = draw(st.one_of(st.floats(0, 1e9), st.integers(0, 10**12)))
    if draw(st.booleans()):
        obj["conversation_id"] = draw(st.one_of(TEXT, st.integers()))
    if draw(st.booleans()):
        obj["turn"] = draw(st.integers(0, 100))
    return obj


NEAR_NATIVE = st.fixed_dictionaries({}, optional={
    "request_id": _maybe_wrong(st.one_of(TEXT, st.integers())),
    "arrival_time": _maybe_wrong(st.one_of(st.floats(), st.integers(-5, 10**6))),
    "prompt_token_ids": _maybe_wrong(TOKEN_IDS),
    "prompt": _maybe_wrong(TEXT),
    "messages": _maybe_wrong(MESSAGES),
    "output_token_ids": _maybe_wrong(TOKEN_IDS),
    "output": _maybe_wrong(TEXT),
    "output_len": _maybe_wrong(st.integers(-2, 10_000_002)),
    "conversation_id": _maybe_wrong(TEXT),
    "turn": _maybe_wrong(st.integers(-2, 5)),
    "promt": JSON_VALUES,
    "hash_ids": JSON_VALUES,
})


@st.composite
def valid_mooncake(draw, tbs: int):
    n = draw(st.integers(1, 40))
    return {
        "timestamp": draw(st.one_of(st.integers(0, 10**9), st.floats(0, 1e9))),
        "input_length": n,
        "output_length": draw(st.integers(0, 30)),
        "hash_ids": draw(st.lists(st.integers(0, 100), min_size=cdiv(n, tbs), max_size=cdiv(n, tbs))),
    }


NEAR_MOONCAKE = st.fixed_dictionaries({}, optional={
    "timestamp": _maybe_wrong(st.one_of(st.integers(-2, 10**6), st.floats())),
    "input_length": _maybe_wrong(st.integers(-1, 30)),
    "output_length": _maybe_wrong(st.integers(-1, 10_000_002)),
    "hash_ids": _maybe_wrong(st.lists(st.one_of(st.integers(0, 20), st.integers()), max_size=6)),
    "prompt": JSON_VALUES,
})


@st.composite
def json_line(draw, tbs: int) -> bytes:
    kind = draw(st.sampled_from(
        ["valid_native", "valid_native", "near_native", "valid_mooncake", "near_mooncake",
         "any_json", "text", "mutated", "blank"]))
    if kind == "blank":
        return draw(st.sampled_from([b"", b"   ", b"\t", b"\r", b"\x0c"]))
    if kind == "text":
        return draw(st.text(max_size=30)).encode("utf-8")
    obj = draw({
        "valid_native": valid_native(), "near_native": NEAR_NATIVE,
        "valid_mooncake": valid_mooncake(tbs), "near_mooncake": NEAR_MOONCAKE,
        "any_json": JSON_VALUES, "mutated": valid_native(),
    }[kind])
    line = json.dumps(obj, ensure_ascii=draw(st.booleans())).encode("utf-8")
    if kind == "mutated" and line:
        at = draw(st.integers(0, len(line)))
        cut = draw(st.integers(0, 3))
        ins = draw(st.binary(max_size=2))
        line = line[:at] + ins + line[at + cut:]
    return line


@st.composite
def trace_file(draw, line_strategy) -> tuple[bytes, int]:
    tbs = draw(st.integers(1, 8))
    lines = draw(st.lists(line_strategy(tbs), min_size=1, max_size=5))
    seps = [(b"\n", b"\n", b"\r\n", b"\r")[x % 4]
            for x in draw(st.binary(min_size=len(lines), max_size=len(lines)))]
    data = b"".join(line + sep for line, sep in zip(lines, seps))
    if draw(st.booleans()):
        data = data.rstrip(b"\n")
    if draw(st.integers(0, 4)) == 0:
        data = b"\xef\xbb\xbf" + data
    return data, tbs


@pytest.fixture(scope="module")
def fuzz_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "trace.jsonl"


def check_reader(path: Path, data: bytes, tbs: int) -> None:
    path.write_bytes(data)
    n_lines = data.count(b"\n") + 1
    try:
        reader = TraceReader(path, trace_block_size=tbs)
        got = list(reader)
    except TraceError as err:
        msg = str(err)
        assert msg.startswith(f"{path}:"), msg
        assert len(msg.splitlines()) == 1 and "\n" not in msg and "\r" not in msg, repr(msg)
        assert err.line is None or 1 <= err.line <= n_lines, (err.line, n_lines)
        if err.line is not None:
            assert msg.startswith(f"{path}:{err.line}: ")
        return
    # Yielded: well-formed requests in file order.
    assert got, "a trace with no requests must raise"
    assert [r.index for r in got] == list(range(len(got)))
    assert all(a.line < b.line for a, b in zip(got, got[1:]))
    assert len({r.request_id for r in got}) == len(got)
    raw_lines = data.split(b"\n")
    for r in got:
        assert r.prompt_token_ids and all(type(t) is int and 0 <= t < 2**31 for t in r.prompt_token_ids)
        assert r.arrival_time >= 0 and math.isfinite(r.arrival_time)
        assert r.num_output_tokens >= 0
        raw = raw_lines[r.line - 1]
        if r.line == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        obj = json.loads(raw.decode("utf-8").strip())
        if reader.format == "native" and "prompt_token_ids" in obj:
            assert r.prompt_token_ids == tuple(obj["prompt_token_ids"])
        if reader.format == "mooncake":
            assert r.num_prompt_tokens == obj["input_length"]
    assert [(r.line, r.prompt_token_ids) for r in reader] == [(r.line, r.prompt_token_ids) for r in got]


@budget("test_reader_on_generated_json_lines")
@given(trace_file(json_line))
@example((b"[" * 100_000 + b"]" * 100_000 + b"\n", 4))  # nested too deeply
@example((b'{"prompt_token_ids": [' + b"9" * 5000 + b"]}\n", 4))  # past Python's digit limit
@example((b'{"prompt_token_ids": [1]}\n\xef\xbb\xbf{"prompt_token_ids": [1]}\n', 4))  # late BOM
def test_reader_on_generated_json_lines(fuzz_path, case):
    check_reader(fuzz_path, *case)


@budget("test_reader_on_raw_bytes")
@given(st.binary(max_size=200), st.integers(1, 8), st.booleans())
@example(b"\xff\xfe{}", 4, False)
@example(b'{"prompt": "caf\xe9"}\n', 4, False)
def test_reader_on_raw_bytes(fuzz_path, data, tbs, valid_first):
    """Random bytes, after a valid first line half the time (so the garbage is read by the
    lazy iteration, not only by format detection)."""
    if valid_first:
        data = b'{"prompt_token_ids": [1, 2]}\n' + data
    check_reader(fuzz_path, data, tbs)


# =========================================================================================
