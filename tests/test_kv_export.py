"""--export-events: the file decodes into vLLM's own classes, and holds exactly the events
vLLM emits when driven plainly (no prefix-tui code in between) on an evicting pool."""

from __future__ import annotations

import json
import random
import struct

import pytest

from engine.backends import BuildOptions, lookup
from engine.kvevents.options import EventsFormat, EventsOut, meta_path
from engine.settings import EngineSettings
from tests.conftest import req
from tui.cli import main

BS, POOL = 4, 12  # a pool of 11 usable blocks: the trace below evicts


def _trace():
    rng = random.Random(7)
    shared = [rng.randrange(1000) for _ in range(9)]
    out = []
    for i in range(14):
        # Half share a 2-block prefix; every prompt has its own tail; some decode.
        head = shared if i % 2 == 0 else [rng.randrange(1000) for _ in range(9)]
        prompt = head + [rng.randrange(1000) for _ in range(rng.randrange(3, 14))]
        output = [5000 + 10 * i + k for k in range(rng.randrange(0, 9))]
        out.append(req(i, prompt, output=output))
    return out


def plain_vllm_events(requests):
    """vLLM's KVCacheManager with events on, the scheduler's calls, token-by-token decode:
    the flat list of (kind, hash) vLLM emits (hashes as bytes, prefix-tui's process
    setting), with no prefix-tui code in between."""
    import torch
    from vllm.distributed.kv_events import AllBlocksCleared, BlockRemoved, BlockStored
    from vllm.sampling_params import SamplingParams
    from vllm.utils.hashing import get_hash_fn_by_name
    from vllm.v1.core.kv_cache_manager import KVCacheManager
    from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
    from vllm.v1.request import Request

    hash_fn = get_hash_fn_by_name("sha256")
    init_none_hash(hash_fn)
    spec = FullAttentionSpec(block_size=BS, num_kv_heads=1, head_size=1, dtype=torch.float16)
    cfg = KVCacheConfig(num_blocks=POOL, kv_cache_tensors=[],
                        kv_cache_groups=[KVCacheGroupSpec(["l"], spec)])
    m = KVCacheManager(cfg, max_model_len=BS * (POOL - 1), scheduler_block_size=BS,
                       hash_block_size=BS, enable_caching=True, log_stats=True,
                       enable_kv_cache_events=True)
    hasher = get_request_block_hasher(BS, hash_fn)
    flat = []
    for i, tr in enumerate(requests):
        r = Request(str(i), list(tr.prompt_token_ids), SamplingParams(max_tokens=1), None,
                    arrival_time=tr.arrival_time, block_hasher=hasher)
        blocks, n, _ = m.get_computed_blocks(r)
        assert m.allocate_slots(r, r.num_tokens - n, n, blocks) is not None
        r.num_computed_tokens = r.num_tokens
        out = tr.output_token_ids
        if out:
            r.append_output_token_ids(out[0])
            for tok in out[1:]:
                assert m.allocate_slots(r, 1) is not None
                r.num_computed_tokens += 1
                r.append_output_token_ids(tok)
        m.free(r)
        for ev in m.take_events():
            if isinstance(ev, BlockStored):
                flat += [("stored", h) for h in ev.block_hashes]
            elif isinstance(ev, BlockRemoved):
                flat += [("removed", h) for h in ev.block_hashes]
            else:
                assert isinstance(ev, AllBlocksCleared)
                flat.append(("cleared", None))
    return flat


def _export(tmp_path, name, *, int_hashes, fmt=EventsFormat.JSONL, mode="sequential",
            requests=None):
    path = tmp_path / name
    events = EventsOut(export_path=str(path), export_format=fmt, int_hashes=int_hashes)
    settings = EngineSettings(block_size=BS, num_blocks=POOL)
    backend = lookup("v1", mode).build(BuildOptions(settings, events=events))
    records = list(backend.replay(requests or _trace(), detail=False))
    return path, records


def _flat(batches):
    from vllm.distributed.kv_events import BlockRemoved, BlockStored

    flat = []
    for b in batches:
        for ev in b.events:
            kind = ("stored" if isinstance(ev, BlockStored) else
                    "removed" if isinstance(ev, BlockRemoved) else "cleared")
            flat += [(kind, h) for h in getattr(ev, "block_hashes", [None])]
    return flat


def test_jsonl_export_decodes_into_vllm_classes_and_equals_plain_vllm(tmp_path, monkeypatch):
    import msgspec
    from vllm.distributed.kv_events import KVEventBatch
    from vllm.v1.core.kv_cache_utils import maybe_convert_block_hash

    path, records = _export(tmp_path, "ev.jsonl", int_hashes=True)
    lines = path.read_bytes().splitlines()
    batches = [msgspec.json.decode(line, type=KVEventBatch) for line in lines]
    assert all(isinstance(b, KVEventBatch) and b.data_parallel_rank == 0 for b in batches)
    plain = plain_vllm_events(_trace())
    removed = [h for k, h in plain if k == "removed"]
    assert len(removed) >= 5, "the pool must evict for this test to mean anything"
    # vLLM's own conversion, with its default setting (ints).
    monkeypatch.setenv("VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES", "1")
    want = [(k, h if h is None else maybe_convert_block_hash(h)) for k, h in plain]
    assert _flat(batches) == want
    assert all(isinstance(h, int) for _k, h in want if h is not None)
    meta = json.loads(meta_path(path).read_text())
    assert meta["block_hashes"] == "int" and meta["status"] == "complete"
    assert meta["events"]["stored"] == sum(k == "stored" for k, _ in plain)
    assert meta["events"]["removed"] == len(removed) == records[-1].totals.evictions
    assert meta["batches"] == len(lines) <= meta["steps"] == len(records)
    # One batch per step with events, at the step's clock (the trace arrival times).
    assert [b.ts for b in batches] == sorted(b.ts for b in batches)
    assert {b.ts for b in batches} <= {r.clock for r in records}


def test_bytes_hashes_and_msgpack_frames_are_vllms_publisher_frames(tmp_path):
    import msgspec
    from vllm.distributed.kv_events import KVEventBatch

    path, _ = _export(tmp_path, "ev.bin", int_hashes=False, fmt=EventsFormat.MSGPACK)
    data, pos, frames = path.read_bytes(), 0, []
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        frames.append(data[pos + 4: pos + 4 + n])
        pos += 4 + n
    assert pos == len(data) and len(frames) % 3 == 0
    messages = [frames[i:i + 3] for i in range(0, len(frames), 3)]
    assert [int.from_bytes(seq, "big") for _t, seq, _p in messages] == list(range(len(messages)))
    assert all(topic == b"" and len(seq) == 8 for topic, seq, _p in messages)
    decoder = msgspec.msgpack.Decoder(KVEventBatch)  # as vLLM's example subscriber decodes
    batches = [decoder.decode(p) for _t, _s, p in messages]
    assert _flat(batches) == plain_vllm_events(_trace())  # bytes: vLLM's full digests
    assert json.loads(meta_path(path).read_text())["block_hashes"] == "bytes"


def test_serve_mode_export_counts_vllms_evictions(tmp_path):
    import msgspec
    from vllm.distributed.kv_events import KVEventBatch

    path, records = _export(tmp_path, "serve.jsonl", int_hashes=True, mode="serve")
    batches = [msgspec.json.decode(x, type=KVEventBatch) for x in path.read_bytes().splitlines()]
    flat = _flat(batches)
    assert sum(k == "removed" for k, _ in flat) == records[-1].totals.evictions > 0
    assert json.loads(meta_path(path).read_text())["settings"]["mode"] == "serve"


def test_a_replay_stopped_early_still_leaves_a_whole_file(tmp_path):
    import msgspec
    from vllm.distributed.kv_events import KVEventBatch

    path = tmp_path / "part.jsonl"
    events = EventsOut(export_path=str(path), int_hashes=True)
    backend = lookup("v1", "sequential").build(
        BuildOptions(EngineSettings(block_size=BS, num_blocks=POOL), events=events))
    it = iter(backend.replay(_trace(), detail=False))
    next(it), next(it), next(it)
    assert not path.exists()  # written beside it, renamed once the replay ends
    it.close()  # what Ctrl-C or quitting the inspector does to the replay
    meta = json.loads(meta_path(path).read_text())
    assert meta["status"] == "interrupted" and meta["steps"] == 3
    lines = path.read_bytes().splitlines()
    assert len(lines) == meta["batches"] and lines
    for line in lines:
        msgspec.json.decode(line, type=KVEventBatch)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("extra, message", [
    (["--export-events", "{trace}"], "is the input trace"),
    (["--export-events", "{existing}"], "exists; pass --force"),
    (["--export-events", "{existing_meta_target}"], "exists; pass --force"),
    (["--export-events", "{new}", "--json", "{new}"], "both --json and --export-events"),
    (["--serve-events", "localhost:5557"], "not a ZMQ endpoint"),
    (["--serve-events-replay", "tcp://*:5558"], "go with --serve-events"),
    (["--export-events", "{new}", "--engine", "v0"], "emits no KV events"),
])
def test_bad_event_flags_are_one_line_before_vllm_loads(tmp_path, capsys, extra, message):
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"prompt_token_ids": [1, 2, 3]}\n')
    existing = tmp_path / "old.jsonl"
    existing.write_text("keep me\n")
    (tmp_path / "m.jsonl.meta.json").write_text("{}")
    names = {"trace": trace, "existing": existing, "new": tmp_path / "n.jsonl",
             "existing_meta_target": tmp_path / "m.jsonl"}
    argv = [str(trace), "--headless"] + [a.format(**names) for a in extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert existing.read_text() == "keep me\n" and trace.read_text().startswith("{")


def test_the_publisher_internals_serve_events_reads_are_there():
    from vllm.distributed.kv_events import ZmqEventPublisher

    from engine.backends.vllm_v1.internals import check_publisher

    pub = ZmqEventPublisher(0, endpoint="inproc://prefix-tui-publisher-check")
    try:
        assert check_publisher(pub) == []
    finally:
        pub.shutdown()


async def test_the_inspector_exports_what_its_records_show(tmp_path):
    """The inspector's replay (detail on) writes the same events its records carry."""
    import msgspec
    from vllm.distributed.kv_events import KVEventBatch

    from engine.backends.vllm_v1.kvstream import external_hash
    from engine.model import EventKind
    from tests.test_tui_support import CHAT, chat_trace, wait_until
    from tui.app import InspectorApp

    path = tmp_path / "insp.jsonl"
    options = BuildOptions(CHAT, events=EventsOut(export_path=str(path), int_hashes=True))
    app = InspectorApp(None, lookup("v1", "sequential"), options, requests=chat_trace())
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, lambda: app.main.feed.replay_done and path.exists())
        records = list(app.main.feed.records)
    shown = [(ev.kind.value, external_hash(h, True)) for r in records for ev in r.events
             if ev.kind is not EventKind.CLEARED for h in ev.block_hashes]
    batches = [msgspec.json.decode(x, type=KVEventBatch) for x in path.read_bytes().splitlines()]
    assert _flat(batches) == shown and shown
    assert json.loads(meta_path(path).read_text())["status"] == "complete"
