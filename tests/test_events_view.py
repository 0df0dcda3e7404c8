"""`prefix-tui events FILE`: a stream read back, hand-worked; broken files are counted, not
fatal; the attach view draws it."""

from __future__ import annotations

import json

import msgspec
import pytest

from engine.kvevents.frames import encode_message
from engine.kvevents.state import CacheState
from tui.cli import main
from tui.events_cli import replay_file


def _stored(hashes, parent=None, group=0):
    from vllm.distributed.kv_events import BlockStored

    return BlockStored(block_hashes=hashes, parent_block_hash=parent, token_ids=[7] * 4 * len(
        hashes), block_size=4, lora_id=None, medium="GPU", lora_name=None, group_idx=group)


def _removed(hashes, group=0):
    from vllm.distributed.kv_events import BlockRemoved

    return BlockRemoved(block_hashes=hashes, medium="GPU", group_idx=group)


def _batches():
    from vllm.distributed.kv_events import KVEventBatch

    return [
        KVEventBatch(ts=0.0, events=[_stored([1, 2, 3])], data_parallel_rank=0),
        # A second prompt on the same first block: chain 1 -> 4.
        KVEventBatch(ts=1.0, events=[_stored([4], parent=1)], data_parallel_rank=0),
        # The recomputed last block: hash 3 stored again while cached (two copies).
        KVEventBatch(ts=2.0, events=[_stored([3], parent=2)], data_parallel_rank=0),
        KVEventBatch(ts=3.0, events=[_removed([3]), _removed([4])], data_parallel_rank=0),
    ]


def test_a_stream_read_back_counts_copies_per_hash(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(b) + b"\n" for b in _batches()))
    state = CacheState()
    replay_file(str(path), state)
    # Stored 1,2,3,4,3 = 5 hashes; removed 3 (one copy) and 4: 1, 2, 3 stay cached.
    assert (state.batches, state.stored, state.removed, state.cleared) == (4, 5, 2, 0)
    assert state.cached_now == 3 and state.cached_blocks == 3
    assert state.problems.unknown_removed == 0
    (tree,) = state.prefixes()
    assert (tree.root, tree.blocks, tree.depth) == (1, 3, 3)


def test_the_prefix_tree_shows_the_biggest_branches():
    from engine.kvevents.model import DecodedBatch
    from engine.model import EventKind, KVEvent

    S = EventKind.STORED
    state = CacheState()
    # 1-2-3, then 4-5 and 6 branch off 1 and 2; 7 is a tree of its own.
    state.apply(DecodedBatch(0.0, (KVEvent(S, (1, 2, 3)), KVEvent(S, (4, 5), 1),
                                   KVEvent(S, (6,), 2), KVEvent(S, (7,)))))
    rows = [(level, p.root, p.blocks, p.depth) for level, p in state.tree()]
    assert rows == [(0, 1, 6, 3), (1, 2, 3, 2), (2, 3, 1, 1), (2, 6, 1, 1), (1, 4, 2, 2),
                    (0, 7, 1, 1)]


def test_broken_files_are_counted_with_where_not_fatal(tmp_path, capsys):
    good = [msgspec.json.encode(b) for b in _batches()]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(good[0] + b"\n{not json\n" + b'[1.0,[{"type":"BlockMoved"}],0]\n'
                     + good[1] + b"\n")
    out = tmp_path / "o.json"
    assert main(["events", str(path), "--headless", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["batches"] == 3 and doc["stored"] == 4
    assert doc["malformed_frames"] == 1 and doc["unknown_tags"] == 1
    assert any(f"{path}:2:" in e for e in doc["errors"])
    assert any(f"{path}:3:" in e and "BlockMoved" in e for e in doc["errors"])
    # msgpack frames cut short: the whole messages before the cut are kept.
    frames = b"".join(encode_message([b"", i.to_bytes(8, "big"), msgspec.msgpack.encode(b)])
                      for i, b in enumerate(_batches()))
    cut = tmp_path / "cut.bin"
    cut.write_bytes(frames[:-5])
    state = CacheState()
    replay_file(str(cut), state)
    assert state.batches == 3 and state.problems.malformed_frames == 1
    assert "truncated" in state.errors[-1]


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no such file"),
    (lambda p: p.mkdir(), "not a file"),
])
def test_a_missing_file_is_one_line(tmp_path, capsys, make, message):
    path = tmp_path / "x.jsonl"
    make(path)
    assert main(["events", str(path), "--headless"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


async def test_the_attach_view_draws_a_file(tmp_path):
    from tui.live_app import LiveApp, file_source

    path = tmp_path / "s.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(b) + b"\n" for b in _batches()))
    app = LiveApp(f"events {path}", file_source(str(path)))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.main
        for _ in range(400):
            if screen.figures is not None and screen.figures.done:
                break
            await pilot.pause(0.05)
        assert screen.figures is not None and screen.figures.done
        await pilot.pause()
        header = str(screen.query_one("#live-header").render())
        figures = str(screen.query_one("#live-figures").render())
        log = str(screen.query_one("#live-log").render())
        tree = str(screen.query_one("#live-prefixes").render())
    assert "end of file" in header and "hashes int" in header
    assert "cached" in figures and "3 hashes, 3 blocks" in figures
    assert "#" not in log and "removed 1" in log and "stored 3" in log
    assert tree == "0000000000000001  3 blocks (100.0 %), depth 3"  # one chain: 1 -> 2 -> 3


async def test_the_attach_view_follows_a_live_stream():
    """The live source on the screen's worker: batches published after it subscribed are
    drawn; quitting stops the worker."""
    import zmq

    from engine.kvevents.attach import AttachSettings
    from tui.live_app import LiveApp, attach_source

    pub = zmq.Context.instance().socket(zmq.XPUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    app = LiveApp("attach test", attach_source(AttachSettings(f"tcp://127.0.0.1:{port}")))
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(4000):  # the worker imports vLLM's classes, then subscribes
                if pub.poll(0):
                    break
                await pilot.pause(0.05)
            pub.recv()
            for seq, batch in enumerate(_batches()):
                pub.send_multipart([b"", seq.to_bytes(8, "big"), msgspec.msgpack.encode(batch)])
            screen = app.main
            for _ in range(400):
                if screen.figures is not None and screen.figures.batches == 4:
                    break
                await pilot.pause(0.05)
            await pilot.pause()
            header = str(screen.query_one("#live-header").render())
            figures = str(screen.query_one("#live-figures").render())
            log = str(screen.query_one("#live-log").render())
            await pilot.press("q")
    finally:
        pub.close(linger=0)
    assert screen.figures.batches == 4 and screen.figures.last_seq == 3
    assert "hashes int" in header and "last seq 3" in header
    assert "3 hashes, 3 blocks" in figures
    assert "#3 removed 1" in log
    assert screen.stop.is_set()
