"""Where a block's hash lives with vLLM's CPU tier (the block inspector's "lives in" line),
on the records of lesson 11 replayed on vLLM: block size 4, 6 usable GPU blocks, 16 CPU
blocks. alice-1 fills blocks 1-5 (4 full, stored in the CPU tier too); bob (step 5) takes
5, 6, 4, 3, 2 and evicts alice's hashes from 4, 3, 2; alice-2's load (step 9) takes 3
and 4, evicting bob's hashes from them; step 10 stores alice's hashes in 2, 3, 4 again."""

from __future__ import annotations

import pytest

from engine.lessons.catalog import bundled
from engine.lessons.check import replay_lesson
from engine.lessons.format import load_lesson
from engine.replay.history import History
from tui.widgets.block_tier import hash_home, home_line


@pytest.fixture(scope="module")
def replay():
    lesson = load_lesson(next(p for p in bundled() if p.stem == "11-cpu-tier"))
    records = replay_lesson(lesson)
    history = History(lesson.settings.num_blocks)
    for rec in records:
        history.append(rec)
    return records, history


def line_at(replay, step: int, block: int) -> str:
    records, history = replay
    history.seek(step - 1)
    slot = history.slot(block)
    home = hash_home(records, step - 1, block, slot)
    assert home is not None
    return home_line(home, slot.ref_cnt > 0)


def test_a_block_cached_on_the_gpu_and_stored_in_the_cpu_tier(replay):
    assert line_at(replay, 4, 1) == "GPU (cached-free) and CPU tier"  # alice-1 finished
    assert line_at(replay, 10, 2) == "GPU (in use) and CPU tier"  # loaded back (L)


def test_an_evicted_hash_lives_on_in_the_cpu_tier(replay):
    records, _ = replay
    bob_hash = next(h for bid, h in records[8].evicted if bid == 3)
    text = line_at(replay, 9, 3)  # handed to alice-2's load: no hash until it lands
    assert text == (f"its last hash {bob_hash.hex()[:8]}, evicted from this block at step 9: "
                    "CPU tier only")


def test_no_tier_no_line(replay):
    import dataclasses

    records, history = replay
    plain = [dataclasses.replace(r, tier=None) for r in records]
    assert hash_home(plain, 3, 1, history.slot(1)) is None
