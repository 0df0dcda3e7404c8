"""Hand-worked V0 cases, block size 4, worked out from vLLM 0.10.1.1's source:
- hits: get_common_computed_block_ids x block size, the whole prompt when every block is
  cached (V0 recomputes the last token in place; V1 would stop at prompt length - 1);
- eviction: LRUEvictor pops the oldest access time first and, at equal times, the block
  with the most hashed tokens (the deepest); the hashless free list goes before it."""

from __future__ import annotations

from engine.model import BlockState, Outcome
from engine.settings import EngineSettings, V0Settings
from tests.conftest import req
from tests.legacy.conftest import replay

A = list(range(1, 9))  # two full blocks of 4
B = list(range(11, 19))
C = [21, 22, 23, 24]


def test_shared_prefix_hits_the_common_full_blocks(v0_backend_factory):
    backend = v0_backend_factory(EngineSettings(block_size=4, num_blocks=64))
    recs = replay(backend, [req(0, A + [9, 10]), req(1, A + [30, 31, 32])])
    first, second = recs[0].request, recs[1].request
    assert (first.hit_tokens, first.new_blocks, first.prompt_blocks) == (0, 3, 3)
    assert (second.hit_tokens, second.hit_blocks, second.new_blocks) == (8, 2, 1)
    assert recs[1].seqs[0].states == (BlockState.HIT_FREE, BlockState.HIT_FREE,
                                      BlockState.PARTIAL)
    # Token hit rate: 8 of 10 + 11 prompt tokens; V0's own rate: 2 hits of 4 full blocks.
    assert (recs[1].totals.hits, recs[1].totals.queries) == (8, 21)
    assert recs[1].totals.v0_hit_rate == 0.5


def test_identical_block_aligned_prompt_is_a_whole_hit(v0_backend_factory):
    backend = v0_backend_factory(EngineSettings(block_size=4, num_blocks=64))
    recs = replay(backend, [req(0, A), req(1, A)])
    second = recs[1].request
    assert (second.hit_tokens, second.hit_blocks, second.new_blocks) == (8, 2, 0)
    assert not second.recomputed_last_block
    # No null block: V0 hands out block 0 first.
    assert recs[0].seqs[0].block_ids == (0, 1)
    assert recs[1].seqs[0].block_ids == (0, 1)


def test_eviction_takes_the_oldest_then_the_deepest_block(v0_backend_factory):
    # 4 blocks, watermark int(0.01 * 4) = 0. A takes blocks 0,1 at tick 1, B blocks 2,3
    # at tick 2; C finds the free list empty and evicts: the oldest time is A's (1.0), and
    # of A's two blocks the one with 8 hashed tokens (block 1) goes first.
    backend = v0_backend_factory(EngineSettings(block_size=4, num_blocks=4))
    recs = replay(backend, [req(0, A), req(1, B), req(2, C), req(3, A)])
    assert [r.request.evicted_blocks for r in recs] == [0, 0, 1, 1]
    assert [e.block_id for e in recs[2].evicted] == [1]
    assert recs[2].seqs[0].block_ids == (1,)
    assert recs[2].seqs[0].states == (BlockState.NEW_EVICTED,)
    # After C: A's first block (tick 1), then B's deepest, then B's first.
    order = recs[2].v0.evictor
    assert [(e.block_id, e.last_accessed, e.num_hashed_tokens) for e in order] == [
        (0, 1.0, 4), (3, 2.0, 8), (2, 2.0, 4)]
    assert not any(e.stale for e in order)
    assert recs[2].free_head == (0, 3, 2)
    # A again: its first block survived, its second was evicted; the new one evicts B's
    # deepest block (tick 2 is now the oldest; C was freed at tick 3).
    assert (recs[3].request.hit_tokens, recs[3].request.new_blocks) == (4, 1)
    assert [e.block_id for e in recs[3].evicted] == [3]


def test_watermark_refuses_what_would_fit(v0_backend_factory):
    # 100 blocks: the watermark keeps int(0.01 * 100) = 1 free, so a 100-block prompt that
    # the pool could hold is NEVER admitted by can_allocate (V1 has no watermark).
    backend = v0_backend_factory(EngineSettings(block_size=4, num_blocks=100))
    recs = replay(backend, [req(0, range(1, 397)), req(1, range(1, 401))])
    assert recs[0].request.outcome is Outcome.OK
    assert recs[1].request.outcome is Outcome.NOT_FITTED
    assert recs[1].v0.can_allocate == "NEVER" and recs[1].v0.watermark_blocks == 1
    assert "can_allocate said NEVER" in recs[1].request.message


def test_experiment_order_gives_no_access_time(v0_backend_factory):
    backend = v0_backend_factory(EngineSettings(block_size=4, num_blocks=64),
                                 V0Settings(call_order="experiment"))
    recs = replay(backend, [req(0, A), req(1, A + [9])])
    assert recs[1].request.hit_tokens == 8
    # V0's default access time: every block enters the evictor at -1.
    assert [e.last_accessed for e in recs[1].v0.evictor] == []
    last = replay(backend, [req(0, A), req(1, B)])
    assert {e.last_accessed for e in last[1].v0.evictor} == {-1}


def test_decode_caches_full_output_blocks(v0_backend_factory):
    # Prompt 6 tokens + 7 output tokens: V0 holds prompt + 6 computed output tokens
    # (the last sampled token is never computed) = 12 tokens = 3 full blocks. The next
    # request sends prompt + the whole reply: it hits those 3 blocks (12 tokens).
    backend = v0_backend_factory(EngineSettings(block_size=4, num_blocks=64))
    prompt, reply = [1, 2, 3, 4, 5, 6], [40, 41, 42, 43, 44, 45, 46]
    recs = replay(backend, [req(0, prompt, output=reply), req(1, prompt + reply + [7])])
    assert recs[0].request.output_blocks == 1 and recs[0].request.output_tokens == 7
    assert recs[1].request.hit_tokens == 12


def test_compare_engines_lists_the_whole_hit_difference(tmp_path):
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    trace = tmp_path / "t.jsonl"
    prompt = list(range(1, 33))  # two blocks of 16
    trace.write_text("".join(json.dumps({"prompt_token_ids": prompt, "output_len": 1}) + "\n"
                             for _ in range(2)))
    out = tmp_path / "c.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tui", "compare", str(trace), "--engines", "v0,v1",
         "--no-progress", "--num-gpu-blocks-override", "64", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    diffs = json.loads(out.read_text())["differences"]
    assert [(d["index"], d["v0_hit_tokens"], d["v1_hit_tokens"]) for d in diffs] == [(1, 32, 16)]
    assert "caps a hit at prompt length - 1" in diffs[0]["reason"]
    assert "Per-request differences, v0 vs v1: 1 of 2 requests" in proc.stdout
