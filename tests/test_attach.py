"""`prefix-tui attach`: a subscriber to vLLM's ZMQ KV event stream, on 127.0.0.1.

End to end: a publisher process (`prefix-tui TRACE --serve-events`, vLLM's own
ZmqEventPublisher) replays a trace through a lossy hop (an XPUB in this test that drops three
batches), and `attach --headless` counts exactly what was published, recovering the drop
through the replay endpoint. Every wait is on an observable event (a subscription arriving,
a file appearing, a count reached), under a deadline."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import msgspec
import pytest
import zmq

from engine.backends import event_decoder
from engine.kvevents.attach import AttachSettings, Subscriber
from engine.kvevents.options import meta_path
from engine.kvevents.state import CacheState
from tui.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_S = 240  # vLLM imports slowly on a busy machine


def _wait(cond, what: str, timeout: float = DEADLINE_S, step=None) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        if step is not None:
            step()
        else:
            time.sleep(0.01)


def _free_port() -> int:
    s = zmq.Context.instance().socket(zmq.ROUTER)
    port = s.bind_to_random_port("tcp://127.0.0.1")
    s.close(linger=0)
    return port


def _frames(seq: int, payload: bytes) -> list[bytes]:
    return [b"", seq.to_bytes(8, "big"), payload]


def test_malformed_frames_unknown_tags_and_wrong_hash_types_are_counted_not_fatal():
    from vllm.distributed.kv_events import BlockRemoved, BlockStored, KVEventBatch

    enc = msgspec.msgpack.encode
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.XPUB)  # XPUB: the subscription arriving is observable
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    state = CacheState()
    sub = Subscriber(AttachSettings(f"tcp://127.0.0.1:{port}"), event_decoder(), state)
    sub.open()
    try:
        _wait(lambda: pub.poll(10), "the subscription")
        pub.recv()

        def stored(hashes):
            return BlockStored(block_hashes=hashes, parent_block_hash=None, token_ids=[1] * 4,
                               block_size=4, lora_id=None, medium="GPU", lora_name=None,
                               group_idx=0)

        good = KVEventBatch(ts=1.0, events=[stored([1, 2])], data_parallel_rank=0)
        mixed = [1.0, [{"type": "BlockMoved", "block_hashes": [9]},
                       {"type": "BlockRemoved", "block_hashes": [1], "medium": "GPU",
                        "group_idx": 0}], 0]
        wrong_type = KVEventBatch(ts=2.0, events=[stored([b"\x01" * 32])], data_parallel_rank=0)
        bad_event = [3.0, [{"type": "BlockStored", "block_hashes": ["not a hash"]}], 0]
        messages = [
            _frames(0, enc(good)),
            _frames(1, b"\xc1\xff garbage"),
            _frames(2, enc({"not": "a batch"})),
            _frames(3, enc(mixed)),
            _frames(4, enc(wrong_type)),
            [b"", b"only two frames"],
            [b"", b"\x00\x05", enc(good)],  # a 2-byte sequence number
            _frames(5, enc(bad_event)),
        ]
        for m in messages:
            pub.send_multipart(m)
        handled = [0]
        _wait(lambda: handled[0] >= len(messages), "every message",
              step=lambda: handled.__setitem__(0, handled[0] + sub.poll(0.05)))
    finally:
        sub.close()
        pub.close(linger=0)
    p = state.problems
    assert (state.batches, state.stored, state.removed) == (4, 2, 1)
    assert p.malformed_frames == 4 and p.unknown_tags == 1 and p.wrong_hash_types == 1
    assert p.bad_events == 1
    assert state.cached_now == 1 and state.hash_type == "int"
    assert any("BlockMoved" in e for e in state.errors)


def _publisher(tmp_path, pub_port: int, replay_port: int) -> subprocess.Popen:
    env = dict(os.environ, VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES="1")
    cmd = [sys.executable, "-m", "tui", str(ROOT / "traces" / "multi_turn.jsonl"), "--headless",
           "--no-progress", "--max-requests", "30", "--num-gpu-blocks-override", "96",
           "--serve-events", f"tcp://127.0.0.1:{pub_port}",
           "--serve-events-replay", f"tcp://127.0.0.1:{replay_port}",
           "--serve-events-linger", "600", "--export-events", str(tmp_path / "truth.jsonl")]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def test_attach_counts_exactly_what_vllms_publisher_sent_and_recovers_a_dropped_stretch(
        tmp_path):
    ctx = zmq.Context.instance()
    # The lossy hop: vLLM's PUB connects to tcp://127.0.0.1:PORT (vLLM binds only for *),
    # so the hop binds there, and forwards to attach, dropping the 3rd to 5th batch.
    upstream = ctx.socket(zmq.SUB)
    upstream.setsockopt(zmq.SUBSCRIBE, b"")
    pub_port = upstream.bind_to_random_port("tcp://127.0.0.1")
    downstream = ctx.socket(zmq.XPUB)
    attach_port = downstream.bind_to_random_port("tcp://127.0.0.1")
    replay_port = _free_port()
    out = tmp_path / "attach.json"
    result: dict = {}
    argv = ["attach", f"tcp://127.0.0.1:{attach_port}", "--replay-endpoint",
            f"tcp://127.0.0.1:{replay_port}", "--headless", "--duration", str(DEADLINE_S),
            "--stop-when-idle", "3", "--json", str(out), "--record", str(tmp_path / "rec.bin")]
    attach = threading.Thread(target=lambda: result.setdefault("rc", main(argv)))
    attach.start()
    publisher = None
    forwarded: list[int] = []
    dropped: list[int] = []
    try:
        _wait(lambda: downstream.poll(10), "attach to subscribe")
        downstream.recv()
        publisher = _publisher(tmp_path, pub_port, replay_port)

        def hop():
            if upstream.poll(10):
                frames = upstream.recv_multipart()
                seq = int.from_bytes(frames[1], "big")
                if 2 <= len(forwarded) + len(dropped) <= 4:
                    dropped.append(seq)
                else:
                    forwarded.append(seq)
                    downstream.send_multipart(frames)
            assert publisher.poll() is None, publisher.stderr.read().decode()[-2000:]

        _wait(lambda: not attach.is_alive(), "attach to stop", step=hop)
    finally:
        if publisher is not None:
            publisher.terminate()
            publisher.wait(30)
        upstream.close(linger=0)
        downstream.close(linger=0)
        attach.join(30)
    assert result["rc"] == 0
    doc = json.loads(out.read_text())
    truth_meta = json.loads(meta_path(tmp_path / "truth.jsonl").read_text())
    assert truth_meta["block_hashes"] == "int" and truth_meta["events"]["removed"] > 0
    assert len(dropped) == 3 and dropped == list(range(dropped[0], dropped[0] + 3))
    # Exactly what was published: every batch, every hash, nothing twice.
    assert doc["batches"] == truth_meta["batches"]
    for key in ("stored", "removed", "cleared"):
        assert doc[key] == truth_meta["events"][key], key
    assert doc["missed_batches"] == 3 and doc["recovered_batches"] == 3
    assert doc["gaps"] == [{"first": dropped[0], "end": dropped[0] + 3, "recovered": 3}]
    # Batches the publisher sent before the hop had subscribed came as history.
    assert doc["history_batches"] == forwarded[0]
    assert doc["last_seq"] == truth_meta["batches"] - 1
    # cached_now from the exported file, counting copies per hash.
    from vllm.distributed.kv_events import BlockRemoved, BlockStored, KVEventBatch

    copies: Counter = Counter()
    for line in (tmp_path / "truth.jsonl").read_bytes().splitlines():
        for ev in msgspec.json.decode(line, type=KVEventBatch).events:
            for h in getattr(ev, "block_hashes", ()):
                copies[(ev.group_idx, ev.medium, h)] += 1 if isinstance(ev, BlockStored) else -1
    assert doc["cached_now"] == sum(1 for n in copies.values() if n > 0)
    assert doc["cached_blocks"] == sum(copies.values())
    assert doc["malformed_frames"] == doc["unknown_removed"] == doc["duplicates"] == 0
    assert doc["status"] == "stream_stopped"
    # The recording (in sequence order, recovered batches in place) and the export both
    # read back to the same figures.
    for name in ("rec.bin", "truth.jsonl"):
        back = tmp_path / f"{name}.json"
        assert main(["events", str(tmp_path / name), "--headless", "--json", str(back)]) == 0
        again = json.loads(back.read_text())
        for key in ("batches", "stored", "removed", "cleared", "cached_now", "cached_blocks"):
            assert again[key] == doc[key], (name, key)
        assert again["missed_batches"] == 0 and again["malformed_frames"] == 0
    rec_meta = json.loads(meta_path(tmp_path / "rec.bin").read_text())
    assert rec_meta["batches"] == doc["batches"] and rec_meta["block_hashes"] == "int"


class _Metrics(http.server.BaseHTTPRequestHandler):
    """vLLM's /metrics, as prometheus_client writes its counters; hits grow by 30 of 40
    queried tokens between two polls."""

    polls = 0

    def do_GET(self):  # noqa: N802 (http.server's name)
        n = type(self).polls
        type(self).polls += 1
        body = ("# HELP vllm:prefix_cache_queries Prefix cache queries\n"
                "# TYPE vllm:prefix_cache_queries counter\n"
                f'vllm:prefix_cache_queries_total{{engine="0",model_name="m"}} {100 + 40 * n}.0\n'
                f'vllm:prefix_cache_queries_created{{engine="0",model_name="m"}} 1.7e9\n'
                f'vllm:prefix_cache_hits_total{{engine="0",model_name="m"}} {20 + 30 * n}.0\n'
                "garbage line {\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_silent_endpoint_says_so_and_still_writes_its_figures(tmp_path, capsys):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "a.json"
    try:
        rc = main(["attach", f"tcp://127.0.0.1:{_free_port()}", "--headless", "--duration",
                   "1.5", "--silence-timeout", "0.5", "--json", str(out), "--metrics-url",
                   f"http://127.0.0.1:{server.server_port}/metrics"])
    finally:
        server.shutdown()
    assert rc == 0
    err = capsys.readouterr().err
    assert "nothing from tcp://127.0.0.1:" in err and "kv-events-config" in err
    doc = json.loads(out.read_text())
    assert doc["status"] == "silent" and doc["batches"] == 0 and doc["cached_now"] == 0
    m = doc["vllm_metrics"]  # polled when attaching and at the end
    assert (m["queries"], m["hits"], m["error"]) == (140.0, 50.0, "")
    assert m["hit_rate"] == 50 / 140 and m["hit_rate_during"] == 30 / 40


@pytest.mark.parametrize("argv, message", [
    (["attach", "localhost:5557", "--headless"], "not a ZMQ endpoint"),
    (["attach", "tcp://127.0.0.1:5557", "--json", "x.json"], "go with --headless"),
    (["attach", "tcp://127.0.0.1:5557", "--headless", "--duration", "-1"], "positive"),
    (["attach", "tcp://127.0.0.1:5557", "--headless", "--json", "{existing}"], "exists"),
])
def test_bad_attach_flags_are_one_line(tmp_path, capsys, argv, message):
    existing = tmp_path / "old.json"
    existing.write_text("keep\n")
    rc = main([a.format(existing=existing) for a in argv])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert existing.read_text() == "keep\n"
