"""prefix-tui's bounds and the sweep's flags, on hand-worked tiny cases (block size 4).
No vLLM here: the bounds are prefix-tui's own figures."""

from __future__ import annotations

import pytest

from engine.errors import UserError
from engine.sweep.bounds import ReuseBound, farthest_next_use
from engine.sweep.keys import request_keys
from engine.sweep.plan import count_requests
from engine.sweep.points import parse_list
from engine.trace.reader import TraceSource
from tests.conftest import req

A = (1, 2, 3, 4)
B = (5, 6, 7, 8)
C = (9, 10, 11, 12)
D = (13, 14, 15, 16)


def keys(reqs, bs=4, max_model_len=None):
    return [request_keys(r, bs, max_model_len) for r in reqs]


def test_keys_chain_prefix_and_root():
    k = keys([req(0, A + B + (1,)), req(1, B + A), req(2, A + B)])
    # Full blocks only; a block's key carries its whole prefix: B after A is not B first.
    assert len(k[0].keys) == 2 and len(k[2].keys) == 2
    assert list(k[0].keys) == list(k[2].keys)
    assert k[1].keys[0] != k[0].keys[1]
    # vLLM caps a hit at prompt length - 1: a block-aligned prompt's last block is never hit.
    assert (k[0].usable, k[2].usable) == (2, 1)


def test_keys_cover_output_but_its_last_token():
    k = keys([req(0, A, output=B + (99,))])[0]
    assert len(k.keys) == 2  # A, then B (99 is sampled, never computed)
    assert keys([req(0, A, output=B)])[0].keys.tolist()[:1] == k.keys.tolist()[:1]
    assert len(keys([req(0, A, output=B)])[0].keys) == 1


def test_reuse_bound_counts_full_blocks_whose_prefix_appeared():
    rb = ReuseBound(4)
    for rk in keys([req(0, A + B + C), req(1, A + B + D + (7,)), req(2, A + B)]):
        rb.add(rk)
    c = rb.counts()
    # r0: nothing before. r1: A, B seen (D not) -> 8 of 13. r2: A, B seen -> 8 of 8 (no n-1 rule).
    assert (c.hit_tokens, c.query_tokens, c.requests) == (16, 12 + 13 + 8, 3)


def test_reuse_bound_warmup_fills_but_is_not_counted():
    rb = ReuseBound(4, warmup=1)
    for rk in keys([req(0, A + B), req(1, A + B + C)]):
        rb.add(rk)
    assert (rb.counts().hit_tokens, rb.counts().query_tokens) == (8, 12)


def test_reuse_bound_sees_an_earlier_output():
    rb = ReuseBound(4)
    for rk in keys([req(0, A, output=B + (0,)), req(1, A + B + C)]):
        rb.add(rk)
    assert rb.counts().hit_tokens == 8


def test_farthest_next_use_keeps_the_block_needed_soonest():
    # Capacity 2 blocks. After r0 (A) and r1 (B) the cache holds A and B; r2 (C A) needs
    # room for C: an LRU cache would drop A (oldest), the bound drops B, used later than A.
    reqs = [req(0, A + (0,)), req(1, B + (0,)), req(2, C + (0,)), req(3, A + (0,)),
            req(4, B + (0,))]
    got = farthest_next_use(keys(reqs), capacity_blocks=2, block_size=4)
    # Each request holds 2 blocks (its full block + the partial one): room for nothing else,
    # so only what the held blocks leave can stay. r3 hits A only if it was kept.
    assert got.query_tokens == 25 and got.requests == 5
    assert got.hit_tokens == 0  # 2 blocks are all a request holds: nothing survives beside it
    roomy = farthest_next_use(keys(reqs), capacity_blocks=3, block_size=4)
    # With 3 blocks one cached block stays beside a request: the bound keeps A for r3
    # (B's next use is later), then B is gone: 4 hit tokens.
    assert roomy.hit_tokens == 4


def test_farthest_next_use_unbounded_equals_every_reusable_block():
    reqs = [req(0, A + B + (0,)), req(1, A + B + C + (0,)), req(2, A + B)]
    got = farthest_next_use(keys(reqs), capacity_blocks=100, block_size=4)
    # r1: A B hit (8); r2: A only (n - 1 rule caps it at 1 block of its 2).
    assert got.hit_tokens == 8 + 4


def test_farthest_next_use_not_fitted_and_never_parent_before_child():
    reqs = [req(0, A + B + C + D + (0,)), req(1, A + B + (0,))]
    got = farthest_next_use(keys(reqs), capacity_blocks=4, block_size=4)
    assert got.not_fitted == 1 and got.requests == 1
    # Capacity 3, prompt A B C + 1: after r0, 3 keys fit; r1 (A B) hits both.
    reqs = [req(0, A + B + C + (0,)), req(1, A + B + (0,)), req(2, A + (0,))]
    got = farthest_next_use(keys(reqs), capacity_blocks=4, block_size=4)
    assert got.hit_tokens == 8 + 4
    # A and B are next used by the same request: on that tie the deeper block (B) goes, so
    # the prefix A still hits; dropping A first would leave B useless and hit nothing.
    reqs = [req(0, A + B + (0,)), req(1, C + (0,)), req(2, A + B + (0,))]
    assert farthest_next_use(keys(reqs), capacity_blocks=3, block_size=4).hit_tokens == 4


@pytest.mark.parametrize("text, want", [
    ("1000,10000,inf", [1000, 10000, None]),
    ("1e6, 4e6,inf", [1000000, 4000000, None]),
])
def test_parse_list(text, want):
    assert parse_list("--capacity-tokens", text, allow_inf=True, floats=True) == want


@pytest.mark.parametrize("text, floats", [("10,x", False), ("1.5", False), ("0", False),
                                          ("10,10", False), ("", False), ("inf", None),
                                          ("nan", True), ("1e400", True)])
def test_parse_list_refuses(text, floats):
    with pytest.raises(UserError):
        parse_list("--block-size", text, allow_inf=floats is not None, floats=bool(floats))
    if text == "inf":
        with pytest.raises(UserError, match="not allowed"):
            parse_list("--block-size", text, allow_inf=False)


def test_count_requests_skips_blank_lines_and_stops_at_max(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"prompt_token_ids": [1]}\n\n  \n{"prompt_token_ids": [2]}\n')
    assert count_requests(TraceSource(str(p))) == 2
    assert count_requests(TraceSource(str(p), max_requests=1)) == 1


def test_count_requests_reads_a_compressed_trace(tmp_path):
    import gzip

    p = tmp_path / "t.jsonl.gz"
    p.write_bytes(gzip.compress(b'{"prompt_token_ids": [1]}\n\n{"prompt_token_ids": [2]}\n'))
    assert count_requests(TraceSource(str(p))) == 2
