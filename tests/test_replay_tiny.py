"""Hand-worked cases at block size 4: every number below is worked out on paper from
vLLM's rules (full blocks only, last prompt token always recomputed, LRU free queue
with a request's blocks freed tail-first, block 0 reserved as the null block)."""

from __future__ import annotations

import pytest

from engine.model import BlockState, Outcome
from engine.replay.sequential import SequentialReplay
from engine.backends.vllm_v1.manager import V1Manager
from engine.settings import EngineSettings
from tests.conftest import req

H, S, N, E, P, R = (BlockState.HIT_FREE, BlockState.HIT_SHARED, BlockState.NEW,
                    BlockState.NEW_EVICTED, BlockState.PARTIAL, BlockState.RECOMPUTED)


def replay(requests, **settings):
    backend = V1Manager(EngineSettings(block_size=4, **settings))
    return backend, list(SequentialReplay(backend, requests))


def test_shared_prefix_hits_exactly_the_full_shared_blocks():
    # 10 tokens = 2 full blocks + 2; the second prompt shares the first 9 tokens:
    # only the 2 full blocks can hit, the shared 9th token sits in a partial block.
    a = list(range(10))
    b = list(range(9)) + [77, 78, 79]
    _, recs = replay([req(0, a), req(1, b)], num_blocks=16)
    r = recs[1].request
    assert (r.hit_tokens, r.hit_blocks, r.new_blocks, r.prompt_blocks) == (8, 2, 1, 3)
    assert recs[1].seqs[0].states == (H, H, N)
    assert recs[1].seqs[0].block_ids[:2] == recs[0].seqs[0].block_ids[:2]
    assert recs[1].totals.hits == 8 and recs[1].totals.queries == 22


def test_identical_prompt_recomputes_its_last_block():
    # 8 tokens = 2 full blocks, both cached by the first run; vLLM caps the hit at
    # 7 tokens, so block 2 is recomputed into a fresh block: 4 hit tokens, not 8.
    p = list(range(8))
    _, recs = replay([req(0, p), req(1, p)], num_blocks=16)
    r = recs[1].request
    assert r.hit_tokens == 4 and r.hit_blocks == 1 and r.new_blocks == 1
    assert r.recomputed_last_block
    assert recs[1].seqs[0].states == (H, R)
    assert recs[1].seqs[0].block_ids[1] != recs[0].seqs[0].block_ids[1]
    assert "last block recomputed" in recs[1].note


def test_unaligned_identical_prompt_hits_all_full_blocks():
    p = list(range(10))  # hit capped at 9 tokens -> both full blocks still hit
    _, recs = replay([req(0, p), req(1, p)], num_blocks=16)
    assert recs[1].request.hit_tokens == 8 and not recs[1].request.recomputed_last_block
    assert recs[1].seqs[0].states == (H, H, P)


def test_small_pool_evicts_in_vllms_order():
    # Pool of 6 = null block + blocks 1..5. A = 8 tokens takes blocks 1,2 and caches them.
    # Freed tail-first, the free queue is [3,4,5, 2,1] (uncached first, then LRU with
    # the chain's tail ahead of its head). B = 12 new tokens needs 3 blocks: 3,4,5.
    # C = 16 new tokens needs 4 blocks: B's blocks (5,4,3 freed tail-first... all cached)
    # come after A's, so vLLM hands out 2, 1 (A's, oldest, evicted) then 5, 4.
    a, b, c = list(range(8)), list(range(100, 112)), list(range(200, 216))
    backend, recs = replay([req(0, a), req(1, b), req(2, c)], num_blocks=6)
    assert recs[0].seqs[0].block_ids == (1, 2)
    assert recs[1].seqs[0].block_ids == (3, 4, 5)
    assert recs[1].free_head == (2, 1)
    c_rec = recs[2]
    assert c_rec.seqs[0].block_ids == (2, 1, 5, 4)
    assert c_rec.seqs[0].states == (E, E, E, E)
    assert c_rec.request.evicted_blocks == 4
    assert sorted(bid for bid, _ in c_rec.evicted) == [1, 2, 4, 5]
    removed = [e for e in c_rec.events if e.kind == "removed"]
    assert sum(len(e.block_hashes) for e in removed) == 4
    assert c_rec.totals.evictions == 4


def test_hit_on_evictor_resident_block_is_taken_back_from_the_free_queue():
    a = list(range(8))
    backend, recs = replay([req(0, a), req(1, a + [9, 9, 9, 9])], num_blocks=8)
    # A's two blocks sit cached-free in the queue after step 1 starts; B hits both.
    assert recs[1].seqs[0].states == (H, H, N)
    assert recs[1].seqs[0].block_ids[:2] == (1, 2)
    assert 1 not in recs[1].free_head and 2 not in recs[1].free_head


def test_caching_off_gives_zero_hits():
    p = list(range(12))
    _, recs = replay([req(0, p), req(1, p), req(2, p + [1])], num_blocks=16, enable_caching=False)
    assert all(r.request.hit_tokens == 0 for r in recs)
    assert recs[-1].totals.blocks_reused == 0
    assert all(s in (N, P) for s in recs[2].seqs[0].states)


def test_request_larger_than_pool_is_recorded_not_raised():
    _, recs = replay([req(0, range(40)), req(1, range(8))], num_blocks=6, max_model_len=1000)
    assert recs[0].request.outcome is Outcome.NOT_FITTED
    assert "needs 10 new blocks" in recs[0].request.message
    assert recs[1].request.outcome is Outcome.OK
    assert recs[1].totals.not_fitted == 1 and recs[1].totals.requests == 2
    assert recs[1].totals.blocks == 2  # the unfitted request adds no blocks


def test_prompt_longer_than_max_model_len_is_too_long():
    _, recs = replay([req(0, range(20))], num_blocks=16, max_model_len=16)
    assert recs[0].request.outcome is Outcome.TOO_LONG


def test_output_blocks_are_cached_and_hit_by_the_next_turn():
    # Turn 1: prompt 6 tokens + 6 output tokens; vLLM computes 11 of the 12 (the last
    # sampled token is never fed back), so blocks [0..3] and [4..7] are full and cached.
    # Turn 2 re-sends prompt + output + 4 new tokens: hits 2 blocks (8 tokens); block
    # [8..11] was never full while cached, so it is new.
    prompt, out = list(range(6)), [50, 51, 52, 53, 54, 55]
    _, recs = replay([req(0, prompt, output=out), req(1, prompt + out + [60, 61, 62, 63])],
                     num_blocks=16)
    assert recs[0].request.output_tokens == 6
    assert recs[1].request.hit_tokens == 8


@pytest.mark.parametrize("out_len", [1, 3, 4, 5, 13])
def test_block_chunked_decode_matches_token_by_token(out_len):
    """The replay feeds decode one block per allocate_slots call; vLLM driven one token
    per call must leave the same block table, hashes and free queue."""
    from engine.backends.vllm_v1.imports import V, import_vllm

    import_vllm()
    prompt = list(range(7))
    out = list(range(500, 500 + out_len))
    backend, recs = replay([req(0, prompt, output=out), req(1, range(300, 305))], num_blocks=12)

    plain = V1Manager(EngineSettings(block_size=4, num_blocks=12))
    m = plain.manager
    r = V.Request("0", prompt, V.SamplingParams(max_tokens=out_len), None,
                     block_hasher=plain._block_hasher)
    blocks, hits, _ = m.get_computed_blocks(r)
    m.allocate_slots(r, len(prompt) - hits, hits, blocks)
    r.num_computed_tokens = len(prompt)
    r.append_output_token_ids(out[0])
    for tok in out[1:]:
        m.allocate_slots(r, 1)
        r.num_computed_tokens += 1
        r.append_output_token_ids(tok)
    ids = recs[0].seqs[0].block_ids
    assert tuple(m.get_block_ids("0")[0]) == ids
    # The replay's record of request 0 (slots after it, free queue) equals vLLM's
    # state after token-by-token decode.
    delta_after = {bid: after for bid, _before, after in recs[0].pool_delta}
    assert set(delta_after) == set(ids)
    assert [delta_after[b] for b in ids] == plain.slots(ids)
    assert recs[0].free_head == tuple(plain.free_queue(64))


@pytest.mark.parametrize("new, out, evicted, expected", [
    (1, 0, 0, "0 of 1 prompt block reused from cache; 1 new prompt block"),
    (2, 1, 1, "0 of 2 prompt blocks reused from cache; 2 new prompt blocks + 1 output block, "
              "evicting 1 cached block"),
    (1309, 2, 0, "0 of 1,309 prompt blocks reused from cache; 1,309 new prompt blocks + 2 output blocks"),
])
def test_step_sentence_names_prompt_and_output_blocks_apart(new, out, evicted, expected):
    # The totals' "blocks new" counts prompt blocks only; the sentence must not call
    # prompt + output blocks "new blocks". Singular and thousands separators, by hand.
    from engine.model import RequestResult
    from engine.replay.common import describe

    r = RequestResult(request=req(0, (1,)), seq_id="0", outcome=Outcome.OK, prompt_tokens=new * 4,
                      hit_tokens=0, hit_blocks=0, new_blocks=new, output_blocks=out,
                      evicted_blocks=evicted, prompt_blocks=new, recomputed_last_block=False)
    assert describe(r) == expected


def test_table_states_by_hand():
    """Block size 4, six blocks: the classifier's precedence, worked by hand."""
    from engine.model import BlockState as B
    from engine.replay.common import table_states

    cached_before = {12: b"key"}.get  # block 12 held cached content before the step
    # Two hits; 18 tokens computed = 4 full blocks (indices 0-3); index 3 recomputed; the
    # block at index 2 (id 12) had content, so allocating it evicted that; 4, 5 partial.
    assert table_states((10, 11, 12, 13, 14, 15), hits=[B.HIT_FREE, B.HIT_SHARED], held=0,
                        computed=18, block_size=4, recomputed_index=3,
                        key_before=cached_before) == (
        B.HIT_FREE, B.HIT_SHARED, B.NEW_EVICTED, B.RECOMPUTED, B.PARTIAL, B.PARTIAL)
    # Held from an earlier step wins over partial; nothing computed past it is new.
    assert table_states((10, 11, 12), hits=[], held=2, computed=8, block_size=4,
                        recomputed_index=None, key_before=cached_before) == (
        B.HELD, B.HELD, B.PARTIAL)
