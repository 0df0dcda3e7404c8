"""Production trace formats: Qwen-Bailian, Mooncake's other traces, OpenAI request logs,
compressed files; detection, --trace-format, and one exact error per malformed line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from engine.errors import TraceError, UserError
from engine.trace import opener
from engine.trace.reader import TraceReader, read_trace
from engine.trace.tokenize import load_tokenizer


def write(tmp_path: Path, lines: list[dict] | bytes, name: str = "t.jsonl") -> Path:
    p = tmp_path / name
    data = lines if isinstance(lines, bytes) else "".join(json.dumps(o) + "\n" for o in lines).encode()
    p.write_bytes(data)
    return p


def error_of(path: Path, **kw) -> str:
    with pytest.raises(TraceError) as ei:
        list(read_trace(path, **kw))
    return str(ei.value)


# -- Qwen-Bailian ------------------------------------------------------------------------------

def bailian(chat: int, parent: int, ids: list[int], n: int | None = None, **kw) -> dict:
    return {"chat_id": chat, "parent_chat_id": parent, "timestamp": kw.pop("timestamp", 1.5),
            "input_length": n if n is not None else 16 * len(ids), "output_length": 3,
            "type": kw.pop("type", "text"), "turn": kw.pop("turn", 1), "hash_ids": ids, **kw}


def test_bailian_hand_worked(tmp_path):
    p = write(tmp_path, [
        bailian(7, -1, [0, 1], n=20, timestamp=0.5),
        bailian(9, 7, [0, 1, 2], n=40, turn=2, type="search"),
        bailian(12, 9, [0, 1, 2, 3], turn=3),
        bailian(13, -1, [4]),
        bailian(20, 99, [5], turn=2),  # its parent is not in the trace
    ])
    reader = TraceReader(p)
    a, b, c, d, e = reader
    assert reader.format == "bailian" and reader.trace_block_size == 16
    assert a.prompt_token_ids == tuple(range(16)) + (16, 17, 18, 19)  # ids 0, 1; 20 tokens
    assert b.prompt_token_ids[:32] == tuple(range(32)) and b.prompt_token_ids[32:] == tuple(range(32, 40))
    assert (a.request_id, a.arrival_time, a.output_len, a.turn) == ("7", 0.5, 3, 1)
    assert [r.conversation_id for r in (a, b, c, d, e)] == ["7", "7", "7", "13", "99"]
    assert [r.request_type for r in (a, b, c)] == ["text", "search", "text"]
    assert reader.ignored_fields == {}


def test_bailian_synthesis_injective(tmp_path):
    # Equal hash ids give equal tokens at every position; different ids never share one.
    p = write(tmp_path, [bailian(1, -1, [10, 11, 12]), bailian(2, -1, [10, 11, 13]),
                         bailian(3, -1, [14, 15, 16])])
    a, b, c = read_trace(p)
    assert a.prompt_token_ids[:32] == b.prompt_token_ids[:32]
    assert set(a.prompt_token_ids[32:]).isdisjoint(b.prompt_token_ids[32:])
    assert set(c.prompt_token_ids).isdisjoint(a.prompt_token_ids + b.prompt_token_ids)


def test_bailian_block_size_flag_and_extra_fields(tmp_path):
    p = write(tmp_path, [bailian(1, -1, [0], n=8, region="eu")])
    reader = TraceReader(p, trace_block_size=8)
    (r,) = reader
    assert r.prompt_token_ids == tuple(range(8)) and reader.ignored_fields == {"region": 1}


BAILIAN_CASES = [
    ({"chat_id": 2, "timestamp": 1, "input_length": 16, "output_length": 1},
     "missing field 'hash_ids' (Qwen-Bailian format)"),
    (bailian("x", -1, [1]), "chat_id must be an int (got str)"),
    (bailian(-3, -1, [1]), "chat_id must be an int >= 0 (got -3)"),
    (bailian(2, -2, [1]), "parent_chat_id must be -1 (a first turn) or a chat_id (got -2)"),
    (bailian(2, 2, [1]), "parent_chat_id 2 is the request's own chat_id"),
    (bailian(2, "1", [1]), "parent_chat_id must be an int, -1 for a first turn (got str)"),
    (bailian(1, -1, [1]), "duplicate chat_id 1 (first on line 1)"),
    (bailian(2, -1, [1], timestamp=-1), "timestamp must be finite and >= 0 (got -1)"),
    (bailian(2, -1, [1], n=40), "hash_ids has 1 ids but input_length 40 needs ceil(40/16) = 3 "
                                 "(trace block size 16)"),
    (bailian(2, -1, [1, "a"]), "hash_ids must be a list of ints (item 1 is str)"),
    (bailian(2, -1, [1], type=3), 'type must be a string such as "text" (got int)'),
    (bailian(2, -1, [1], turn=-1), "turn must be between 0 and 2147483648 (got -1)"),
    ({**bailian(2, -1, [1]), "output_length": 1.5}, "output_length must be an int (got float)"),
]


@pytest.mark.parametrize("obj, message", BAILIAN_CASES, ids=[m for _, m in BAILIAN_CASES])
def test_malformed_bailian_line(tmp_path, obj, message):
    p = write(tmp_path, [bailian(1, -1, [0]), obj])
    assert error_of(p) == f"{p}:2: {message}"


# -- Mooncake's other traces -------------------------------------------------------------------

def test_mooncake_toolagent_and_arxiv_lines_read_alike(tmp_path):
    # The FAST'25 tool&agent trace and the arXiv trace have the conversation trace's fields.
    line = {"timestamp": 27482, "input_length": 1000, "output_length": 52, "hash_ids": [46, 47]}
    reader = TraceReader(write(tmp_path, [line]))
    (r,) = reader
    assert reader.format == "mooncake" and reader.trace_block_size == 512
    assert r.arrival_time == 27.482 and r.prompt_token_ids[:2] == (46 * 512, 46 * 512 + 1)


# -- OpenAI request logs -----------------------------------------------------------------------

def test_openai_chat_completions_and_wrapped(tmp_path):
    tok = load_tokenizer()
    p = write(tmp_path, [
        {"model": "base", "messages": [{"role": "user", "content": "Hi there"}], "max_tokens": 5,
         "temperature": 0.2},
        {"timestamp": "2025-01-01T00:00:10Z", "custom_id": "r2",
         "body": {"model": "tenant-a", "prompt": "Hello world", "max_completion_tokens": 7,
                  "cache_salt": "team-a"}},
        {"timestamp": "2025-01-01T00:00:12.5+00:00", "body": {
            "model": "base", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Hi"}, {"type": "text", "text": " there"}]}]},
         "response": {"choices": [{"message": {"role": "assistant", "content": "Hi"}}]}},
        {"model": "base", "prompt": [[1, 2, 3]]},
    ])
    reader = TraceReader(p, lora_names=("tenant-a",))
    a, b, c, d = reader
    assert reader.format == "openai"
    # The chat renders with the default template, as a native "messages" line would.
    assert a.prompt_token_ids == (7220, 25, 15902, 612, 198, 562, 10167, 25)
    assert (a.request_id, a.arrival_time, a.output_len, a.lora_name) == ("1", 0.0, 5, None)
    assert b.prompt_token_ids == tuple(tok.encode("Hello world")) and b.output_len == 7
    # Times count from the first timestamped request; the model is an adapter when listed.
    assert (b.request_id, b.arrival_time, b.cache_salt, b.lora_name) == ("r2", 0.0, "team-a", "tenant-a")
    assert c.prompt_token_ids == a.prompt_token_ids and c.arrival_time == 2.5
    assert c.output_token_ids == (15902, 198)  # the logged reply, as the template's reply
    assert d.prompt_token_ids == (1, 2, 3) and d.output_len == 0


OPENAI_CASES = [
    ({"model": "m"}, "messages (chat) or prompt (completions) is needed, exactly one"),
    ({"body": {"model": "m", "prompt": "a", "messages": []}},
     "body.messages (chat) or body.prompt (completions) is needed, exactly one (got messages and prompt)"),
    ({"body": "text"}, "body must be an object, the request's JSON body (got str)"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
     "messages[0].content[0] is a 'image_url' part: prefix-tui replays text parts only"),
    ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role must be a non-empty string (got null)"),
    ({"model": "m", "prompt": ["a", "b"]}, "prompt is a batch of 2 prompts: give one prompt a line"),
    ({"model": "m", "prompt": 5}, "prompt must be a string or a list of token ids (got int)"),
    ({"model": "m", "prompt": "a", "max_tokens": -1}, "max_tokens must be between 0 and 10000000 (got -1)"),
    ({"body": {"model": "m", "prompt": "a", "cache_salt": "a/b"}},
     "body.cache_salt must not contain '/' (vLLM rejects '@', '/', backslash and NUL)"),
    ({"timestamp": "yesterday", "body": {"model": "m", "prompt": "a"}},
     "timestamp 'yesterday' is neither a number of seconds nor an ISO 8601 time"),
    ({"timestamp": 5, "body": {"model": "m", "prompt": "a"}},
     "timestamp is 5.000 s before the first request's: a log is replayed in its order, so times "
     "must not go back past the first"),
    ({"custom_id": "a", "body": {"model": "m", "prompt": "a"}}, "duplicate request id 'a' (first on line 1)"),
    ({"model": 3, "prompt": "a"}, "model must be a string (got int)"),
]


@pytest.mark.parametrize("obj, message", OPENAI_CASES, ids=[m for _, m in OPENAI_CASES])
def test_malformed_openai_line(tmp_path, obj, message):
    first = {"timestamp": 10, "custom_id": "a", "body": {"model": "m", "prompt": "a"}}
    p = write(tmp_path, [first, obj])
    assert error_of(p) == f"{p}:2: {message}"


# -- detection, --trace-format, hints ----------------------------------------------------------

def test_trace_format_forces_a_format(tmp_path):
    p = write(tmp_path, [{"prompt": "hi", "max_tokens": 3}])
    # Without "model" it reads as native, which is strict: the hint names the other format.
    assert error_of(p) == (f"{p}:1: unknown field 'max_tokens' (an OpenAI request log field; "
                           "OpenAI request log and native lines cannot mix; --trace-format openai reads the file "
                           "as OpenAI request log)")
    (r,) = read_trace(p, trace_format="openai")
    assert r.output_len == 3
    with pytest.raises(UserError, match="--trace-format: unknown format 'csv'"):
        TraceReader(p, trace_format="csv")


def test_native_names_a_bailian_field(tmp_path):
    p = write(tmp_path, [{"prompt": "hi"}, {"prompt": "hi", "chat_id": 3}])
    assert error_of(p) == (f"{p}:2: unknown field 'chat_id' (a Qwen-Bailian field; "
                           "Qwen-Bailian and native lines cannot mix)")


def test_csv_hint(tmp_path):
    p = write(tmp_path, b"chat_id,parent_chat_id,timestamp\n1,-1,0.5\n")
    with pytest.raises(TraceError) as ei:
        TraceReader(p)
    assert str(ei.value).endswith("; this looks like CSV: prefix-tui reads JSON Lines, one JSON object a line")


# -- compressed files --------------------------------------------------------------------------

LINES = [{"prompt_token_ids": [i, i + 1]} for i in range(300)]


@pytest.mark.parametrize("name", ["t.jsonl.gz", "t.jsonl"])  # gzip is told by its bytes, not its name
def test_gzip_read_lazily(tmp_path, name):
    data = "".join(json.dumps(o) + "\n" for o in LINES).encode()
    p = write(tmp_path, gzip.compress(data), name)
    reader = TraceReader(p)
    assert reader.compression == "gzip" and reader.total_bytes == p.stat().st_size
    seen = []
    for r in reader:
        seen.append(reader.bytes_read)
    assert len(seen) == 300 and 0 < seen[0] <= seen[-1] <= reader.total_bytes


def test_zstd_read(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    data = "".join(json.dumps(o) + "\n" for o in LINES).encode()
    p = write(tmp_path, zstandard.ZstdCompressor().compress(data), "t.jsonl.zst")
    reader = TraceReader(p)
    assert reader.compression == "zstd"
    assert [r.prompt_token_ids for r in reader] == [tuple(o["prompt_token_ids"]) for o in LINES]


def test_zstd_without_the_package_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(opener, "zstd_available", lambda: False)
    p = write(tmp_path, opener.ZSTD_MAGIC + b"\x00" * 8, "t.jsonl.zst")
    with pytest.raises(TraceError) as ei:
        TraceReader(p)
    assert str(ei.value) == (f"{p}: is zstd-compressed and the zstandard package is not installed: "
                             "pip install zstandard, or decompress it (zstd -d)")


def test_cut_off_gzip_names_the_line(tmp_path):
    data = "".join(json.dumps(o) + "\n" for o in LINES).encode()
    whole = gzip.compress(data)
    p = write(tmp_path, whole[: len(whole) // 2], "t.jsonl.gz")
    reader = TraceReader(p)
    with pytest.raises(TraceError) as ei:
        list(reader)
    assert ei.value.line is not None and 1 < ei.value.line < 300
    assert "the gzip stream is corrupt: the file ends in the middle of the compressed stream" in str(ei.value)


@pytest.mark.parametrize("head, name, what", [
    (b"\xfd7zXZ\x00\x00", "t.jsonl.xz", "is xz-compressed; prefix-tui reads JSON Lines, plain, gzip (.gz) or zstd (.zst)"),
    (b"PAR1\x00\x00", "t.parquet", "is a Parquet file; prefix-tui reads JSON Lines, plain, gzip (.gz) or zstd (.zst)"),
    (b'{"prompt": "a"}\n', "t.jsonl.gz",
     "is named .gz but is not gzip-compressed (its first bytes are b'{\"pr'); rename it or compress it"),
])
def test_unreadable_files_are_named(tmp_path, head, name, what):
    p = write(tmp_path, head, name)
    with pytest.raises(TraceError) as ei:
        TraceReader(p)
    assert str(ei.value) == f"{p}: {what}"


def test_headless_bailian_report_and_json(tmp_path, capsys):
    from tui.cli import main

    p = write(tmp_path, [bailian(1, -1, [0, 1], type="text", region="eu"),
                         bailian(2, 1, [0, 1, 2], type="search", turn=2)], "b.jsonl")
    out = tmp_path / "r.json"
    code = main([str(p), "--headless", "--no-progress", "--json", str(out)])
    report = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert code == 0
    s = doc["settings"]
    assert (s["trace_format"], s["trace_block_size"], s["block_size"]) == ("bailian", 16, 16)
    # The second turn hits the first's two blocks (vLLM's block size is the trace's here).
    assert [r["hit_tokens"] for r in doc["requests"]] == [0, 32]
    assert [(g["request_type"], g["requests"]) for g in doc["by_type"]] == [("search", 1), ("text", 1)]
    assert "fields ignored (bailian format): region (first on line 1)" in report
