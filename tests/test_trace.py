"""The trace reader: native and Mooncake formats, and one exact error per malformed line."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest

import engine.trace.reader
from engine.errors import TraceError
from engine.trace.mooncake import synthesize_tokens
from engine.trace.reader import TraceReader, read_trace

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GOOD = b'{"prompt_token_ids": [1, 2, 3]}\n'


def write(tmp_path: Path, data: bytes | str) -> Path:
    p = tmp_path / "trace.jsonl"
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


def error_of(path: Path, **kw) -> str:
    with pytest.raises(TraceError) as ei:
        list(read_trace(path, **kw))
    return str(ei.value)


# (line 2 of a native trace whose line 1 is valid) -> the message after "path:2: "
NATIVE_CASES = [
    (b'{"prompt_token_ids": [1, 2', "invalid JSON: Expecting ',' delimiter (column 27)"),
    (b"[1, 2, 3]", "expected a JSON object, got list"),
    (b'"hello"', "expected a JSON object, got str"),
    (b'{"prompt_token_ids": [1], "prompt_token_ids": [2]}', "duplicate field 'prompt_token_ids'"),
    (b'{"prompt_token_ids": [1], "arrival_time": NaN}', "invalid JSON: NaN is not valid JSON"),
    (b'{"prompt_token_ids": [' + b"1" * 5000 + b"]}", "invalid JSON: a number has too many digits"),
    (b'{"prompt": "caf\xe9"}', "not valid UTF-8 (byte 0xe9 at column 16)"),
    (b'\xef\xbb\xbf{"prompt_token_ids": [1]}', "byte-order mark (BOM) is allowed only at the start of the file"),
    (b'{"prompt": "\\ud800"}', "prompt contains an unpaired surrogate escape at character 0"),
    # prompts
    (b'{"request_id": "a"}', "missing prompt: give one of prompt_token_ids, prompt, messages"),
    (
        b'{"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}',
        "give exactly one of prompt_token_ids, prompt, messages (got prompt and messages)",
    ),
    (b'{"prompt_token_ids": "1 2 3"}', "prompt_token_ids must be a list of ints (got str)"),
    (b'{"prompt_token_ids": {"a": 1}}', "prompt_token_ids must be a list of ints (got object)"),
    (b'{"prompt_token_ids": [1, "2"]}', "prompt_token_ids must be a list of ints (item 1 is str)"),
    (b'{"prompt_token_ids": [1, true]}', "prompt_token_ids must be a list of ints (item 1 is bool)"),
    (b'{"prompt_token_ids": [1, 2.0]}', "prompt_token_ids must be a list of ints (item 1 is float)"),
    (b'{"prompt_token_ids": []}', "prompt_token_ids must not be empty"),
    (
        b'{"prompt_token_ids": [5, -1]}',
        "prompt_token_ids[1] = -1 is out of range (token ids must be >= 0 and < 2**31)",
    ),
    (
        b'{"prompt_token_ids": [2147483648]}',
        "prompt_token_ids[0] = 2147483648 is out of range (token ids must be >= 0 and < 2**31)",
    ),
    (b'{"prompt": 5}', "prompt must be a string (got int)"),
    (b'{"prompt": ""}', "prompt must not be empty"),
    (b'{"messages": "hi"}', "messages must be a list of objects (got str)"),
    (b'{"messages": []}', "messages must not be empty"),
    (b'{"messages": ["hi"]}', "messages[0] must be an object with role and content (got str)"),
    (b'{"messages": [{"role": "user"}]}', "messages[0] is missing 'content'"),
    (
        b'{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": null}]}',
        "messages[1].content must be a string (got null)",
    ),
    (
        b'{"messages": [{"role": "user", "content": "a", "name": "bob"}]}',
        "messages[0] has unknown field 'name' (fields: role, content)",
    ),
    (b'{"messages": [{"role": "", "content": "a"}]}', "messages[0].role must not be empty"),
    # other fields
    (b'{"prompt_token_ids": [1], "promt": "x"}', "unknown field 'promt'"),
    (
        b'{"prompt_token_ids": [1], "hash_ids": [0]}',
        "unknown field 'hash_ids' (a Mooncake field; Mooncake and native lines cannot mix)",
    ),
    (b'{"prompt_token_ids": [1], "request_id": [1]}', "request_id must be a string or an int (got list)"),
    (b'{"prompt_token_ids": [1], "request_id": true}', "request_id must be a string or an int (got bool)"),
    (b'{"prompt_token_ids": [1], "request_id": ""}', "request_id must not be empty"),
    (b'{"prompt_token_ids": [1], "request_id": "1"}', "duplicate request_id '1' (first on line 1)"),
    (b'{"prompt_token_ids": [1], "arrival_time": "1"}', "arrival_time must be a number of seconds (got str)"),
    (b'{"prompt_token_ids": [1], "arrival_time": -0.5}', "arrival_time must be finite and >= 0 (got -0.5)"),
    (b'{"prompt_token_ids": [1], "arrival_time": 1e400}', "arrival_time must be finite and >= 0 (got inf)"),
    (b'{"prompt_token_ids": [1], "output_len": -1}', "output_len must be between 0 and 10000000 (got -1)"),
    (
        b'{"prompt_token_ids": [1], "output_len": 10000001}',
        "output_len must be between 0 and 10000000 (got 10000001)",
    ),
    (b'{"prompt_token_ids": [1], "output_len": 1.5}', "output_len must be an int (got float)"),
    (b'{"prompt_token_ids": [1], "output_token_ids": "x"}', "output_token_ids must be a list of ints (got str)"),
    (
        b'{"prompt_token_ids": [1], "output_token_ids": [1, null]}',
        "output_token_ids must be a list of ints (item 1 is null)",
    ),
    (b'{"prompt_token_ids": [1], "output": 3}', "output must be a string (got int)"),
    (
        b'{"prompt_token_ids": [1], "output": "a", "output_len": 3}',
        "give at most one of output_token_ids, output, output_len (got output and output_len)",
    ),
    (b'{"prompt_token_ids": [1], "conversation_id": 1.5}', "conversation_id must be a string or an int (got float)"),
    (b'{"prompt_token_ids": [1], "turn": -1}', "turn must be >= 0 (got -1)"),
    (b'{"prompt_token_ids": [1], "turn": "1"}', "turn must be an int (got str)"),
]


@pytest.mark.parametrize("line, message", NATIVE_CASES, ids=[m for _, m in NATIVE_CASES])
def test_malformed_native_line(tmp_path, line, message):
    p = write(tmp_path, GOOD + line + b"\n" + GOOD)
    assert error_of(p) == f"{p}:2: {message}"


def test_error_on_first_line_is_raised_when_opening(tmp_path):
    p = write(tmp_path, b"{nope}\n")
    with pytest.raises(TraceError) as ei:
        TraceReader(p)
    assert str(ei.value) == f"{p}:1: invalid JSON: Expecting property name enclosed in double quotes (column 2)"
    assert (ei.value.path, ei.value.line) == (str(p), 1)


def test_requests_before_a_bad_line_are_yielded(tmp_path):
    p = write(tmp_path, GOOD + GOOD.replace(b"[1, 2, 3]", b"[4]") + b"oops\n")
    it = iter(TraceReader(p))
    assert next(it).prompt_token_ids == (1, 2, 3)
    assert next(it).prompt_token_ids == (4,)
    with pytest.raises(TraceError, match=r":3: invalid JSON"):
        next(it)


@pytest.mark.parametrize("data", [b"", b"\n\n  \r\n", b"\xef\xbb\xbf\n"])
def test_empty_file(tmp_path, data):
    p = write(tmp_path, data)
    assert error_of(p) == f"{p}: no requests (the file is empty)"


def test_missing_file_and_directory(tmp_path):
    missing = tmp_path / "nope.jsonl"
    assert error_of(missing) == f"{missing}: no such file"
    assert error_of(tmp_path) == f"{tmp_path}: is a directory, not a trace file"


def test_bom_crlf_blank_lines_and_defaults(tmp_path):
    p = write(
        tmp_path,
        b'\xef\xbb\xbf{"prompt_token_ids": [1]}\r\n\r\n   \n{"prompt_token_ids": [2, 3], "arrival_time": 3}\r\n'
        b'{"prompt_token_ids": [4]}',  # no final newline
    )
    reader = TraceReader(p)
    assert reader.format == "native"
    assert reader.total_bytes == p.stat().st_size
    reqs = list(reader)
    assert [(r.index, r.line, r.request_id, r.arrival_time) for r in reqs] == [
        (0, 1, "1", 0.0),
        (1, 4, "4", 3.0),
        (2, 5, "5", 2.0),  # default arrival_time is the request index
    ]
    assert reqs[1].prompt_token_ids == (2, 3)
    assert reqs[0].output_token_ids is None and reqs[0].output_len == 0 and reqs[0].text is None
    assert reader.bytes_read == reader.total_bytes
    assert len(list(reader)) == 3  # re-iterable


def test_native_fields_hand_worked(tmp_path):
    p = write(
        tmp_path,
        '{"request_id": 7, "arrival_time": 0.25, "prompt": "Hello world", "output": "Hi",'
        ' "conversation_id": 12, "turn": 3}\n'
        '{"messages": [{"role": "user", "content": "Hi there"}], "output_len": 5}\n'
        '{"prompt_token_ids": [0, 2147483647], "output_token_ids": [4, 5]}\n',
    )
    a, b, c = read_trace(p)
    assert (a.request_id, a.arrival_time, a.conversation_id, a.turn) == ("7", 0.25, "12", 3)
    assert a.prompt_token_ids == (15496, 995)  # "Hello" " world"
    assert a.output_token_ids == (15902, 198)  # " Hi" "\n": the assistant body
    assert a.output_len == 2 and a.text == "Hello world"
    # "user" ":" " Hi" " there" "\n" "ass" "istant" ":"
    assert b.prompt_token_ids == (7220, 25, 15902, 612, 198, 562, 10167, 25)
    assert b.text == "user: Hi there\nassistant:"
    assert b.output_token_ids is None and b.num_output_tokens == 5
    assert b.conversation_id is None and b.turn is None
    assert c.prompt_token_ids == (0, 2147483647)
    assert c.output_token_ids == (4, 5) and c.num_output_tokens == 2


def test_an_empty_reply_is_no_output_tokens(tmp_path):
    # The reply template adds " \n" around a reply; an empty reply must not become 2 tokens.
    (r,) = read_trace(write(tmp_path, '{"prompt": "Hello", "output": ""}\n'))
    assert r.num_output_tokens == 0 and r.output_len == 0


def test_long_display_text_is_cut(tmp_path):
    p = write(tmp_path, '{"prompt": "' + "word " * 999 + 'word"}\n')
    (r,) = read_trace(p)
    assert len(r.text) == engine.trace.reader.TEXT_LIMIT and r.text.endswith("…")
    assert r.num_prompt_tokens == 1000


def test_tokenizer_loaded_only_for_text_and_by_name(tmp_path, monkeypatch):
    asked = []
    real = engine.trace.reader.load_tokenizer

    def fake_load(name):
        asked.append(name)
        return real(None)

    monkeypatch.setattr(engine.trace.reader, "load_tokenizer", fake_load)
    p = write(tmp_path, GOOD + b'{"prompt_token_ids": [9]}\n')
    assert len(list(read_trace(p, tokenizer_name="my-tok"))) == 2
    assert asked == []
    p = write(tmp_path, GOOD + b'{"prompt": "a"}\n{"prompt": "b"}\n')
    assert len(list(read_trace(p, tokenizer_name="my-tok"))) == 3
    assert asked == ["my-tok"]  # once per reader


def test_cancel_stops_iteration(tmp_path):
    p = write(tmp_path, b"".join(b'{"prompt_token_ids": [%d]}\n' % i for i in range(10)))
    cancel = threading.Event()
    got = []
    for r in TraceReader(p, cancel=cancel):
        got.append(r.prompt_token_ids[0])
        if len(got) == 3:
            cancel.set()
    assert got == [0, 1, 2]


# -- Mooncake --------------------------------------------------------------------------------


def test_mooncake_synthesis_hand_worked():
    assert synthesize_tokens([0, 7], 6, 4) == (0, 1, 2, 3, 28, 29)
    assert synthesize_tokens([0, 7, 1], 9, 4) == (0, 1, 2, 3, 28, 29, 30, 31, 4)
    # A modulo over GPT-2's vocabulary would send 50257 onto 0; here they stay apart.
    assert synthesize_tokens([50257], 4, 4) == (201028, 201029, 201030, 201031)
    assert set(synthesize_tokens([0], 4, 4)).isdisjoint(synthesize_tokens([50257], 4, 4))
    # Injective over many ids: every (id, offset) pair gives its own token.
    blocks = [synthesize_tokens([h], 16, 16) for h in range(1000)]
    assert len(set(itertools.chain.from_iterable(blocks))) == 16 * 1000


def test_mooncake_reader(tmp_path):
    p = write(
        tmp_path,
        '{"timestamp": 1500, "input_length": 6, "output_length": 2, "hash_ids": [0, 7]}\n'
        "\n"
        '{"timestamp": 2000, "input_length": 9, "output_length": 0, "hash_ids": [0, 7, 1]}\n',
    )
    reader = TraceReader(p, trace_block_size=4)
    assert reader.format == "mooncake"
    a, b = reader
    assert (a.index, a.line, a.request_id, a.arrival_time, a.output_len) == (0, 1, "1", 1.5, 2)
    assert a.prompt_token_ids == (0, 1, 2, 3, 28, 29)
    assert (b.index, b.line, b.request_id, b.arrival_time, b.output_len) == (1, 3, "3", 2.0, 0)
    assert b.prompt_token_ids == (0, 1, 2, 3, 28, 29, 30, 31, 4)
    assert a.output_token_ids is None and a.text is None


MOONCAKE_OK = b'{"timestamp": 0, "input_length": 600, "output_length": 1, "hash_ids": [0, 1]}\n'
MOONCAKE_CASES = [
    (
        b'{"timestamp": 0, "input_length": 600, "output_length": 1, "hash_ids": [0]}',
        "hash_ids has 1 ids but input_length 600 needs ceil(600/512) = 2 (trace block size 512)",
    ),
    (
        b'{"timestamp": 0, "input_length": 512, "output_length": 1, "hash_ids": [0, 1]}',
        "hash_ids has 2 ids but input_length 512 needs ceil(512/512) = 1 (trace block size 512)",
    ),
    (b'{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [-3]}', "hash_ids[0] must be >= 0 (got -3)"),
    (
        b'{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [4194304]}',
        "hash_ids[0] = 4194304 is too large: with trace block size 512 its tokens would pass 2**31 (max id 4194303)",
    ),
    (
        b'{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": ["a"]}',
        "hash_ids must be a list of ints (item 0 is str)",
    ),
    (b'{"timestamp": 0, "input_length": 0, "output_length": 1, "hash_ids": []}', "input_length must be >= 1 (got 0)"),
    (
        b'{"timestamp": "0", "input_length": 5, "output_length": 1, "hash_ids": [0]}',
        "timestamp must be a number of milliseconds (got str)",
    ),
    (
        b'{"timestamp": -1, "input_length": 5, "output_length": 1, "hash_ids": [0]}',
        "timestamp must be finite and >= 0 (got -1)",
    ),
    (
        b'{"timestamp": 0, "input_length": 5, "output_length": 99999999999, "hash_ids": [0]}',
        "output_length must be between 0 and 10000000 (got 99999999999)",
    ),
    (b'{"timestamp": 0, "input_length": 5, "hash_ids": [0]}', "missing field 'output_length' (Mooncake format)"),
    (
        b'{"prompt_token_ids": [1]}',
        "missing field 'timestamp' (Mooncake format; 'prompt_token_ids' is a native field: "
        "Mooncake and native lines cannot mix)",
    ),
]


def test_mooncake_extra_fields_are_ignored_and_listed(tmp_path):
    # A production format: a field it does not use is not a typo, so not an error.
    p = write(tmp_path, MOONCAKE_OK + b'{"timestamp": 1, "input_length": 600, "output_length": 1,'
              b' "hash_ids": [0, 2], "session": "s1", "x": 1}\n')
    reader = TraceReader(p)
    a, b = reader
    assert a.prompt_token_ids[:512] == b.prompt_token_ids[:512] != a.prompt_token_ids[512:]
    assert reader.ignored_fields == {"session": 2, "x": 2}


@pytest.mark.parametrize("line, message", MOONCAKE_CASES, ids=[m for _, m in MOONCAKE_CASES])
def test_malformed_mooncake_line(tmp_path, line, message):
    p = write(tmp_path, MOONCAKE_OK + line + b"\n")
    assert error_of(p) == f"{p}:2: {message}"


def test_mooncake_default_block_size(tmp_path):
    (r,) = read_trace(write(tmp_path, MOONCAKE_OK))
    assert r.prompt_token_ids == tuple(range(600))  # block 0 = 0..511, block 1 = 512..1023, cut at 600


def test_bad_trace_block_size(tmp_path):
    p = write(tmp_path, MOONCAKE_OK)
    with pytest.raises(TraceError, match=r"trace block size must be an int >= 1 \(got 0\)"):
        TraceReader(p, trace_block_size=0)


def test_real_mooncake_trace_lazily():
    path = SHARED / "mooncake" / "conversation_trace.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    reader = TraceReader(path)
    assert reader.format == "mooncake"
    reqs = list(itertools.islice(reader, 50))
    assert [r.index for r in reqs] == list(range(50))
    assert 0 < reader.bytes_read < reader.total_bytes  # stopped early: the file was not read whole
    first, second = reqs[0], reqs[1]
    # Line 1: input 6758, hash ids 0..13, which are consecutive, so the tokens are 0..6757.
    assert first.prompt_token_ids == tuple(range(6758))
    assert (first.request_id, first.arrival_time, first.output_len) == ("1", 0.0, 500)
    # Line 2: hash ids [0, 14, ...]: shares exactly the first 512-token block with line 1.
    assert second.num_prompt_tokens == 7322
    assert second.prompt_token_ids[:512] == first.prompt_token_ids[:512]
    assert second.prompt_token_ids[512] == 14 * 512 != first.prompt_token_ids[512]
    assert all(r.arrival_time >= 0 for r in reqs)
