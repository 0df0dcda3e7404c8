"""Property tests (hypothesis): the sequential replay keeps every invariant against vLLM's
real pool at every step (the trace reader's property tests: tests/test_fuzz_reader.py).

Budget: the ``max_examples`` of the property tests here and in test_fuzz_reader.py add up to
``BUDGET`` (>= 10,000).
The whole file takes about 50 s on 2 cores (vLLM's import included). (A counter of the
cases that ran used to be asserted here; it could not fail, so it is gone: each property
test is shown to bite by test_checker_catches_a_broken_record.)

Every replay step is checked against vLLM itself, never against a re-implementation:
- the pool read straight from vLLM (``scan_pool``, ``free_queue``, ``num_free_blocks``) vs the
  record's counts, free-queue head and a ``History`` rebuilt from the records' pool deltas;
- the request's hits vs an oracle built from vLLM's own block hashes of the prompt (longest
  prefix of them present in the pool before the step, capped at prompt_len - 1 tokens);
- every block state (H/S/N/E/P/R) vs the pool before and after the step;
- evictions vs vLLM's BlockRemoved events, stores vs its BlockStored events;
- totals vs the sums of the per-request rows, and vs vLLM's PrefixCacheStats.

Violations are collected by category. ``KNOWN_BUGS`` lists the categories of engine bugs
found by this file; each has a strict-xfail repro test below, so when the engine is fixed the
xfail turns into a failure and the category must be removed from ``KNOWN_BUGS`` (the fuzz
then enforces it too).
"""

from __future__ import annotations

import math
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.replay.history import History
from engine.model import FREE_SLOT, BlockState, Outcome
from engine.replay.common import FREE_HEAD_LEN
from engine.replay.sequential import SequentialReplay
from engine.backends.vllm_v1.manager import V1Manager
from engine.settings import EngineSettings
from tests.conftest import req

H, S, N, E, P, R = (BlockState.HIT_FREE, BlockState.HIT_SHARED, BlockState.NEW,
                    BlockState.NEW_EVICTED, BlockState.PARTIAL, BlockState.RECOMPUTED)
FITTED = (Outcome.OK, Outcome.TRUNCATED)

# category -> why it is tolerated in the fuzz (each has a strict xfail repro test below)
KNOWN_BUGS: dict[str, str] = {}  # all found so far are fixed; their repros are below

BUDGET = {
    "test_replay_invariants_mixed": 3000,
    "test_replay_invariants_tiny_pool": 3000,
    "test_replay_invariants_aligned_repeats": 1500,
    "test_headless_fast_path_equals_detailed_replay": 800,
    "test_reader_on_generated_json_lines": 1800,
    "test_reader_on_raw_bytes": 1500,
}
assert sum(BUDGET.values()) >= 10_000

SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
           HealthCheck.large_base_example]


def budget(name: str):
    return settings(max_examples=BUDGET[name], deadline=None, suppress_health_check=SLOW_OK)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


# =========================================================================================
# The replay checker
def replay_and_check(settings_: EngineSettings, requests) -> list[tuple[str, str]]:
    """Replay with detail=True and check every invariant after every step. Returns the
    violations as (category, message); an empty list means all held."""
    b = V1Manager(settings_)
    nb, bs = settings_.num_blocks, settings_.block_size
    caching = settings_.enable_caching
    max_len = settings_.effective_max_model_len
    null = b.null_block_id
    problems: list[tuple[str, str]] = []
    history = History(nb, checkpoint_every=3)
    if b.scan_pool() != [FREE_SLOT] * nb:
        problems.append(("initial_pool", f"{b.scan_pool()}"))
    sums: Counter[str] = Counter()
    scans: list[list] = []
    sharing = 0.0
    prev_seq: str | None = None
    step = -1

    def bad(cat: str, msg: str) -> None:
        problems.append((cat, f"step {step}: {msg}"))

    ever_removed: set = set()  # hashes vLLM's BlockRemoved events named before this step
    last_removed: list = []
    for step, rec in enumerate(SequentialReplay(b, requests, detail=True)):
        ever_removed.update(last_removed)
        rq = requests[step]
        plen = rq.num_prompt_tokens
        pblocks = cdiv(plen, bs)
        r = rec.request
        scan = b.scan_pool()
        scans.append(scan)
        before = list(history.pool)  # vLLM's pool at the end of the previous step
        history.append(rec)
        history.forward()

        # -- identity ------------------------------------------------------------------
        if rec.index != step or len(rec.admitted) != 1 or r.request is not rq:
            bad("identity", f"record {rec.index} admitted {rec.admitted}")
        if rec.clock != rq.arrival_time:
            bad("identity", f"clock {rec.clock} != {rq.arrival_time}")
        if rec.finished != ((prev_seq,) if prev_seq else ()):
            cat = "error_step_finished" if rec.error is not None else "finished"
            bad(cat, f"{rec.finished} but previous seq {prev_seq} was freed at this step")
        if rec.error is not None:
            past = settings_.max_model_len is not None and plen + rq.num_output_tokens > max_len
            bad("decode_past_max_model_len" if past else "vllm_error", rec.error.message)
            return problems  # the replay stops at an error

        # -- vLLM's pool vs the record ------------------------------------------------------
        if any(ref < 0 for ref, *_ in scan):
            bad("negative_ref", f"{scan}")
        free = [i for i, (ref, *_) in enumerate(scan) if i != null and ref == 0]
        cached_free = [i for i in free if scan[i][1] is not None]
        in_use = [i for i, (ref, *_) in enumerate(scan) if i != null and ref > 0]
        if not rec.num_free == len(free) == b.num_free_blocks():
            bad("num_free", f"record {rec.num_free}, scan {len(free)}, vLLM {b.num_free_blocks()}")
        if rec.num_cached_free != len(cached_free):
            bad("num_cached_free", f"record {rec.num_cached_free}, scan {len(cached_free)}")
        if rec.num_free + len(in_use) != nb - 1:
            bad("pool_total", f"free {rec.num_free} + in use {len(in_use)} != {nb - 1}")
        queue = b.free_queue()
        if sorted(queue) != free or len(set(queue)) != len(queue):
            bad("free_queue", f"vLLM's queue {queue} vs ref-0 blocks {free}")
        if rec.free_head != tuple(queue[:FREE_HEAD_LEN]):
            bad("free_head", f"{rec.free_head} vs {queue[:FREE_HEAD_LEN]}")
        if history.pool != scan:
            bad("history_vs_pool", f"history {history.pool} vs vLLM {scan}")
        if not caching and any(h is not None for _, h, *_ in scan):
            bad("caching_off_hash", f"{scan}")

        # -- the oracle: vLLM's own block hashes of the prompt vs the pool before ----------
        hashes = list(b.new_request(f"oracle-{step}", rq.prompt_token_ids, 0.0).block_hashes)
        cached_before = {h for _, h, *_ in before if h is not None}
        k = 0
        if caching:
            while k < min((plen - 1) // bs, len(hashes)) and hashes[k] in cached_before:
                k += 1
        recompute = (caching and plen % bs == 0 and k == pblocks - 1
                     and hashes[pblocks - 1] in cached_before)

        if r.prompt_tokens != plen or r.prompt_blocks != pblocks:
            bad("prompt_size", f"{r.prompt_tokens}/{r.prompt_blocks} for {plen} tokens")
        # vLLM's input processor rejects a prompt that leaves no room for one output token.
        too_long = plen >= max_len
        # In sequential mode everything is free at lookup: it fits iff the pool holds it.
        not_fitted = not too_long and pblocks > nb - 1
        want = Outcome.TOO_LONG if too_long else Outcome.NOT_FITTED if not_fitted else None
        if want is not None and r.outcome is not want:
            cat = "too_long_at_max_model_len" if plen == max_len else "outcome"
            bad(cat, f"{r.outcome} for {plen} tokens, expected {want} (max_model_len {max_len})")
        if want is None and r.outcome not in FITTED:
            bad("outcome", f"{r.outcome} ({r.message}) for {plen} tokens in a pool of {nb}")

        removed = [h for e in rec.events if e.kind == "removed" for h in e.block_hashes]
        last_removed = removed
        stored = [h for e in rec.events if e.kind == "stored" for h in e.block_hashes]
        if any(e.kind == "cleared" for e in rec.events):
            bad("events", "cleared event")
        if r.evicted_blocks != len(removed):
            bad("evicted_count", f"row {r.evicted_blocks} vs {len(removed)} BlockRemoved hashes")
        if Counter(h for _, h in rec.evicted) != Counter(removed):
            bad("evicted_vs_removed", f"evicted {len(rec.evicted)} blocks, vLLM removed {len(removed)}")
        for bid, h in rec.evicted:
            if before[bid][1] != h:
                bad("evicted_hash", f"block {bid} lost {h!r} but held {before[bid][1]!r}")
        for h in removed:
            if h not in cached_before:
                bad("removed_not_cached", f"vLLM removed {h!r}, not cached before the step")

        if r.outcome in FITTED:
            if r.hit_tokens != k * bs or r.hit_blocks != k:
                bad("hit_oracle", f"hit {r.hit_tokens} tokens / {r.hit_blocks} blocks, oracle {k} blocks")
            if r.hit_tokens % bs or r.hit_tokens >= plen or r.hit_blocks > plen // bs:
                bad("hit_bounds", f"hit {r.hit_tokens} tokens for {plen} at block size {bs}")
            if r.hit_blocks * bs != r.hit_tokens:
                bad("hit_bounds", f"{r.hit_blocks} blocks vs {r.hit_tokens} tokens")
            if r.new_blocks != pblocks - r.hit_blocks:
                bad("new_blocks", f"{r.new_blocks} new + {r.hit_blocks} hit != {pblocks}")
            if r.recomputed_last_block != recompute:
                bad("recompute", f"recomputed={r.recomputed_last_block}, oracle {recompute}")
            # Miss reasons vs the pool before the step and vLLM's earlier BlockRemoved events.
            want = Counter(partial=plen % bs != 0) if caching else None
            for i in range(k, plen // bs) if caching else ():
                held = hashes[i] in cached_before
                last = held and i == k == plen // bs - 1 and plen % bs == 0
                want["last_token" if last else "after_miss" if held else
                     "evicted" if hashes[i] in ever_removed else "cold"] += 1
            why = r.reasons.counts() if r.reasons is not None else None
            if (why is None) != (want is None) or (
                    why is not None and {k_: v for k_, v in why.items() if v} != +want):
                bad("miss_reasons", f"{why} vs oracle {want} (hit {k} of {pblocks})")
            elif why is not None and (sum(why.values()) != pblocks - r.hit_blocks or sum(
                    s_.blocks for s_ in r.reasons.hit_sources) != r.hit_blocks):
                bad("miss_reasons_sum", f"{r.reasons} for {r.hit_blocks} of {pblocks}")
            if r.output_tokens > rq.num_output_tokens or (
                (r.outcome is Outcome.TRUNCATED) != (r.output_tokens < rq.num_output_tokens)
            ):
                bad("output", f"{r.outcome}: {r.output_tokens} of {rq.num_output_tokens} output tokens")
            past = plen + r.output_tokens > max_len
            if past:  # vLLM allocated nothing past max_model_len: block checks do not apply
                bad("decode_past_max_model_len", f"{plen}+{r.output_tokens} > {max_len}")

            def check_seq(seq) -> None:  # the served sequence's block table vs the pool
                ids = seq.block_ids
                computed = plen + max(r.output_tokens - 1, 0)  # the last sampled token is never fed back
                if (seq.seq_id, seq.request_id) != (r.seq_id, rq.request_id):
                    bad("seqs", f"seq {seq.seq_id}/{seq.request_id}")
                if (seq.num_prompt_tokens, seq.num_tokens, seq.num_hit_tokens, seq.num_prompt_blocks) != (
                    plen, computed, r.hit_tokens, pblocks
                ):
                    bad("seqs", f"seq counts {seq}")
                if len(ids) != r.hit_blocks + r.new_blocks + r.output_blocks or len(ids) != cdiv(computed, bs):
                    bad("block_count", f"{len(ids)} blocks; hit {r.hit_blocks} new {r.new_blocks} "
                                       f"out {r.output_blocks}; {computed} computed tokens")
                if len(set(ids)) != len(ids) or null in ids:
                    bad("block_ids", f"{ids}")
                # Sequential: exactly this request holds blocks, each once.
                if sorted(ids) != in_use or any(scan[i][0] != 1 for i in ids):
                    bad("in_use_vs_seq", f"seq {ids}, in use {in_use}")
                if len(seq.states) != len(ids):
                    bad("states", f"{len(seq.states)} states for {len(ids)} blocks")
                evicted_ids = {bid for bid, _ in rec.evicted}
                for j, (bid, state) in enumerate(zip(ids, seq.states)):
                    full = (j + 1) * bs <= computed
                    if caching and (scan[bid][1] is not None) != full:
                        bad("cached_vs_full", f"block {j} (id {bid}) full={full} hash={scan[bid][1]!r}")
                    if j < k:
                        if state is not H:  # everything is free at lookup: S cannot happen here
                            bad("hit_state", f"block {j} is {state.letter}, a hit on a free block")
                        if before[bid][1] != hashes[j]:
                            bad("hit_block_hash", f"block {j} (id {bid}) held {before[bid][1]!r}")
                        continue
                    if state not in (N, E, P, R):
                        bad("state", f"block {j} is {state.letter} past the hits")
                    if (state is P) != (not full):
                        bad("P_state", f"block {j} is {state.letter} but full={full} "
                                       f"({computed} computed tokens, block size {bs})")
                    if state is P and j != len(ids) - 1:
                        bad("P_state", f"P at {j} of {len(ids)}")
                    if (state is R) != (r.recomputed_last_block and j == pblocks - 1):
                        bad("R_state", f"block {j} is {state.letter}, recomputed={r.recomputed_last_block}")
                    if state is N and (before[bid][1] is not None or bid in evicted_ids):
                        bad("N_state", f"block {j} (id {bid}) is N but held {before[bid][1]!r}")
                    if state is E and before[bid][1] is None:
                        bad("E_state", f"block {j} (id {bid}) is E but held no hash")
                    if state is E and bid not in evicted_ids:
                        bad("evicted_vs_removed", f"block {j} (id {bid}) is E, not in record.evicted")
                newly_cached = [scan[bid][1] for bid in ids[k:] if scan[bid][1] is not None]
                if Counter(stored) != Counter(newly_cached):
                    bad("stored_events", f"{len(stored)} BlockStored vs {len(newly_cached)} newly cached")
                for bid, _h in rec.evicted:
                    if bid not in ids:
                        bad("evicted_hash", f"evicted block {bid} not handed to the request")

            if r.output_blocks < 0:
                bad("output", f"output_blocks {r.output_blocks}")
            if len(rec.seqs) != 1:
                bad("seqs", f"{len(rec.seqs)} sequences for a served request")
            elif not past:
                check_seq(rec.seqs[0])
            sums.update(tokens=plen, blocks=pblocks, reused=r.hit_blocks, new=r.new_blocks,
                        hits=r.hit_tokens)
            sharing += r.sharing_fraction
            prev_seq = r.seq_id
        else:
            if rec.seqs or in_use:
                bad("unfitted_holds_blocks", f"{r.outcome}: seqs {rec.seqs}, in use {in_use}")
            if (r.hit_tokens, r.hit_blocks, r.new_blocks, r.output_blocks, r.evicted_blocks) != (0,) * 5:
                bad("unfitted_counts", f"{r}")
            if stored or removed:
                bad("unfitted_events", f"{rec.events}")
            sums.update(not_fitted=1)
            prev_seq = None
        sums.update(evictions=r.evicted_blocks)

        # -- totals add up ---------------------------------------------------------------------
        t = rec.totals
        got = (t.requests, t.tokens, t.blocks, t.blocks_reused, t.blocks_new, t.evictions,
               t.not_fitted, t.errors)
        want_t = (step + 1, sums["tokens"], sums["blocks"], sums["reused"], sums["new"],
                  sums["evictions"], sums["not_fitted"], 0)
        if got != want_t:
            bad("totals", f"{got} vs sums {want_t}")
        if t.blocks_reused + t.blocks_new != t.blocks:
            bad("totals", f"reused {t.blocks_reused} + new {t.blocks_new} != {t.blocks}")
        if not math.isclose(t.sum_request_sharing, sharing, abs_tol=1e-9):
            bad("totals", f"sharing {t.sum_request_sharing} vs {sharing}")
        # vLLM's PrefixCacheStats: queried = prompt tokens of admitted requests, hit = hits.
        q, h = (sums["tokens"], sums["hits"]) if caching else (0, 0)
        if (t.queries, t.hits) != (q, h):
            bad("cache_stats", f"vLLM queries/hits {t.queries}/{t.hits} vs rows {q}/{h}")
        if (t.recent_queries, t.recent_hits) != (t.queries, t.hits):  # < 1,000 requests
            bad("cache_stats", f"recent {t.recent_queries}/{t.recent_hits}")

    # The cursor walks back and seeks (checkpoints every 3 steps) to vLLM's pool of that step.
    for target in (len(scans) // 2, 0, len(scans) - 1, len(scans) // 3):
        if 0 <= target < len(scans):
            history.seek(target)
            if history.pool != scans[target]:
                problems.append(("history_seek", f"seek({target}) differs from vLLM's pool then"))
    # The replay frees the last request: vLLM's pool is all free again.
    if step >= 0 and any(s.ref_cnt for s in b.scan_pool()):
        problems.append(("final_pool", f"{b.scan_pool()}"))
    if step >= 0 and b.num_free_blocks() != nb - 1:
        problems.append(("final_pool", f"{b.num_free_blocks()} free of {nb - 1}"))
    if step != len(requests) - 1:
        problems.append(("steps", f"{step + 1} records for {len(requests)} requests"))
    return problems


def assert_invariants(settings_: EngineSettings, requests) -> None:
    problems = [p for p in replay_and_check(settings_, requests) if p[0] not in KNOWN_BUGS]
    assert not problems, "\n".join(f"{c}: {m}" for c, m in problems[:10])


# =========================================================================================
# Strategies: tiny alphabet so prefixes collide often
class ByteSource:
    """Decodes hypothesis' bytes into choices. A whole trace is drawn as one byte string:
    hypothesis draws and shrinks that far faster than a tree of small draws (a 0 byte is
    the simplest choice, and an exhausted source gives 0s, so shrinking simplifies)."""

    def __init__(self, blob: bytes) -> None:
        self.blob, self.pos = blob, 0

    def pick(self, n: int) -> int:
        """A choice in range(n)."""
        if self.pos >= len(self.blob):
            return 0
        self.pos += 1
        return self.blob[self.pos - 1] % n

    def tokens(self, max_len: int, alphabet: int) -> list[int]:
        return [self.pick(alphabet) for _ in range(self.pick(max_len + 1))]


def decode_trace(blob: bytes, *, max_requests=12, max_prefix=14, max_suffix=10, max_out=12,
                 aligned_to: int | None = None, cap: int | None = None) -> list:
    """Requests over a 3-token alphabet: a few shared prefixes + suffixes, multi-turn
    follow-ups (previous prompt + its output + more), exact repeats; outputs as token ids
    (which later prompts can hit), as output_len, or none. With ``cap`` (what the pool
    holds), 7 prompts in 8 are cut to it, so most fit and the rest are too long."""
    src = ByteSource(blob)
    prefixes = [src.tokens(max_prefix, 3) for _ in range(1 + src.pick(3))]
    out: list = []
    last_full: list[int] = []  # previous prompt + its output tokens
    for i in range(1 + src.pick(max_requests)):
        kind = src.pick(4) if out else 0
        if kind <= 1:
            tokens = prefixes[src.pick(len(prefixes))] + src.tokens(max_suffix, 3)
        elif kind == 2:
            tokens = last_full + src.tokens(max_suffix, 3)
        else:
            tokens = list(out[src.pick(len(out))].prompt_token_ids)
        if cap and src.pick(8):
            tokens = tokens[:cap]
        if aligned_to:
            tokens = (tokens + [0] * aligned_to)[: max(aligned_to, len(tokens) // aligned_to * aligned_to)]
        tokens = tokens or [0]
        out_kind = src.pick(3)
        if out_kind == 2:
            output = src.tokens(max_out, 4)
            out.append(req(i, tokens, output=output))
            last_full = tokens + output
        else:
            out.append(req(i, tokens, output_len=src.pick(max_out + 1) if out_kind else 0))
            last_full = list(tokens)
    return out


@st.composite
def engine_settings(draw, max_blocks=40, max_block_size=8, max_len=True):
    bs = draw(st.integers(1, max_block_size))
    nb = draw(st.integers(2, max_blocks))
    caching = draw(st.integers(0, 4)) > 0  # on 80 % of the time
    algo = draw(st.sampled_from(["sha256", "xxhash"]))
    mml = draw(st.integers(1, bs * nb)) if max_len and draw(st.integers(0, 5)) == 0 else None
    return EngineSettings(block_size=bs, num_blocks=nb, max_model_len=mml,
                          enable_caching=caching, hash_algo=algo)


@st.composite
def scenarios(draw, max_blocks=40, max_block_size=8, max_len=True, aligned=False, **trace_kw):
    """(EngineSettings, requests): prompts sized to the pool, most of them fitting."""
    s = draw(engine_settings(max_blocks, max_block_size, max_len))
    blob = draw(st.binary(min_size=64, max_size=512))
    cap = min(s.block_size * (s.num_blocks - 1), s.effective_max_model_len)
    requests = decode_trace(blob, aligned_to=s.block_size if aligned else None, cap=cap, **trace_kw)
    return s, requests


# =========================================================================================
# Replay properties
@budget("test_replay_invariants_mixed")
@given(scenarios())
def test_replay_invariants_mixed(case):
    assert_invariants(*case)


@budget("test_replay_invariants_tiny_pool")
@given(scenarios(max_blocks=8, max_block_size=4, max_len=False, max_requests=20, max_prefix=10,
                 max_suffix=8, max_out=10))
def test_replay_invariants_tiny_pool(case):
    """Pools of 2..8 blocks: constant eviction, requests that do not fit, truncated decode."""
    assert_invariants(*case)


@budget("test_replay_invariants_aligned_repeats")
@given(scenarios(max_blocks=24, max_block_size=6, max_len=False, aligned=True, max_requests=10))
def test_replay_invariants_aligned_repeats(case):
    """Block-aligned prompts and repeats: vLLM's recomputed last block on every path."""
    assert_invariants(*case)


@budget("test_headless_fast_path_equals_detailed_replay")
@given(scenarios(max_len=False))
def test_headless_fast_path_equals_detailed_replay(case):
    """detail=False (headless) gives the same rows, totals and free queue as detail=True."""
    settings_, requests = case
    detailed = list(SequentialReplay(V1Manager(settings_), requests, detail=True))
    fast = list(SequentialReplay(V1Manager(settings_), requests, detail=False))
    assert len(fast) == len(detailed)
    for d, f in zip(detailed, fast):
        assert f.admitted == d.admitted
        assert f.totals == d.totals
        assert (f.num_free, f.free_head, f.finished, f.error) == (d.num_free, d.free_head, d.finished, d.error)
        assert f.pool_delta == () and f.seqs == () and f.events == ()


# -- hand-found repros of the engine bugs the fuzz tolerates (KNOWN_BUGS) -----------------


def _categories(settings_, requests) -> set[str]:
    return {c for c, _ in replay_and_check(settings_, requests)}


def test_block_holding_uncomputed_last_token_is_labelled_partial():
    # Prompt 6 + output 6 at block size 4: 11 tokens computed -> block 2 holds 8, 9, 10
    # computed and the 12th (sampled, never fed back). vLLM leaves it uncached.
    b = V1Manager(EngineSettings(block_size=4, num_blocks=16))
    (rec,) = SequentialReplay(b, [req(0, range(6), output=[50, 51, 52, 53, 54, 55])])
    assert b.slot(rec.seqs[0].block_ids[2])[1] is None  # vLLM: not cached
    assert rec.seqs[0].states == (N, N, P)


def test_evicted_and_restored_block_is_listed_as_evicted():
    # Pool of 3 = null + 2. A = 8 tokens takes blocks 1, 2. B = the same 8 tokens: hits
    # block 1, recomputes the last block; the only free block is 2, which holds that very
    # hash: vLLM evicts it (BlockRemoved) and caches it again (BlockStored).
    b = V1Manager(EngineSettings(block_size=4, num_blocks=3, max_model_len=100))
    recs = list(SequentialReplay(b, [req(0, range(8)), req(1, range(8))]))
    assert recs[1].request.evicted_blocks == 1  # vLLM's BlockRemoved
    assert len(recs[1].evicted) == 1


def test_decode_stops_at_max_model_len():
    b = V1Manager(EngineSettings(block_size=4, num_blocks=16, max_model_len=8))
    recs = list(SequentialReplay(b, [req(0, range(6), output_len=10), req(1, range(3))]))
    assert [r.error for r in recs] == [None, None]
    assert recs[0].request.outcome is Outcome.TRUNCATED
    assert 6 + recs[0].request.output_tokens <= 8


def test_prompt_of_exactly_max_model_len_is_too_long():
    b = V1Manager(EngineSettings(block_size=4, num_blocks=16, max_model_len=8))
    (rec,) = SequentialReplay(b, [req(0, range(8))])
    assert rec.request.outcome is Outcome.TOO_LONG


def test_error_step_reports_the_freed_previous_request(monkeypatch):
    b = V1Manager(EngineSettings(block_size=4, num_blocks=16))
    calls = []

    def allocate(request, num_new_tokens, lookup=None):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected")
        return V1Manager.allocate(b, request, num_new_tokens, lookup)

    monkeypatch.setattr(b, "allocate", allocate)
    recs = list(SequentialReplay(b, [req(0, range(5)), req(1, range(7))]))
    assert recs[1].error is not None
    assert recs[1].finished == ("0",)  # request 0 was freed by vLLM at this step


def test_fixed_bug_categories_stay_fixed():
    """The categories the fuzz once found are no longer produced by their repros."""
    assert "P_state" not in _categories(EngineSettings(block_size=4, num_blocks=16),
                                    [req(0, range(6), output=[50, 51, 52, 53, 54, 55])])
    assert "evicted_vs_removed" not in _categories(EngineSettings(block_size=4, num_blocks=3,
                                                                  max_model_len=100),
                                               [req(0, range(8)), req(1, range(8))])
    assert "decode_past_max_model_len" not in _categories(
        EngineSettings(block_size=4, num_blocks=16, max_model_len=8), [req(0, range(6), output_len=10)])
    assert "too_long_at_max_model_len" not in _categories(
        EngineSettings(block_size=4, num_blocks=16, max_model_len=8), [req(0, range(8))])


def test_checker_catches_a_broken_record(monkeypatch):
    """The checker is not vacuous: a replay that misreports hits is caught."""
    import engine.replay.sequential as replay_mod

    real = replay_mod.SequentialReplay._recomputes_last_block
    monkeypatch.setattr(replay_mod.SequentialReplay, "_recomputes_last_block",
                        lambda self, *a: not real(self, *a))
    cats = _categories(EngineSettings(block_size=4, num_blocks=16), [req(0, range(8)), req(1, range(8))])
    assert "recompute" in cats
