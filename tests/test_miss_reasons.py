"""Why each prompt block missed, and where hits came from (engine.replay.miss_reasons).

Hand-worked tiny cases at block size 4, in sequential and serve mode. The pool is 8 blocks:
vLLM's null block 0 and 7 usable, handed out from the free queue's front (1, 2, ... at
first); a freed request's blocks go to the queue's tail, its last block first.
"""

from __future__ import annotations

import dataclasses

import pytest

from engine.backends.vllm_v1.manager import V1Manager
from engine.backends.vllm_v1.scheduler import V1Scheduler
from engine.block_reasons import BlockReasons, EvictedBy, HitSource
from engine.model import TraceRequest
from engine.replay.miss_reasons import MissTracker, SeenLookup
from engine.replay.sequential import SequentialReplay
from engine.replay.serve import ServeReplay
from engine.settings import EngineSettings, ServeSettings
from tests.conftest import req

BS = 4
SETTINGS = EngineSettings(block_size=BS, num_blocks=8)
A_B_P = tuple(range(9))  # blocks A = 0..3, B = 4..7, and a partial block (token 8)


def r(index: int, tokens, *, conv: str | None = None, salt: str | None = None,
      lora: str | None = None) -> TraceRequest:
    # Arrivals 10 s apart: in serve mode each request finishes before the next arrives.
    return dataclasses.replace(req(index, tokens, output_len=1, arrival=index * 10.0),
                               conversation_id=conv, cache_salt=salt, lora_name=lora)


def rows(mode: str, requests) -> dict[str, BlockReasons]:
    if mode == "sequential":
        records = SequentialReplay(V1Manager(SETTINGS), requests, detail=False)
    else:
        records = ServeReplay(V1Scheduler(SETTINGS, ServeSettings()), requests, detail=False)
    out = {}
    for rec in records:
        assert rec.error is None
        for row in rec.rows:
            assert row.reasons is not None
            assert row.reasons.missed == row.prompt_blocks - row.hit_blocks
            out[row.request_id] = row.reasons
    return out


def step_of(mode: str, requests, request_id: str) -> int:
    """The record index at which a request was admitted (serve: an iteration)."""
    if mode == "sequential":
        return next(i for i, q in enumerate(requests) if q.request_id == request_id)
    records = ServeReplay(V1Scheduler(SETTINGS, ServeSettings()), requests, detail=False)
    return next(rec.index for rec in records
                for a in rec.admitted if a.request_id == request_id)


MODES = ("sequential", "serve")


@pytest.mark.parametrize("mode", MODES)
def test_cold_partial_last_token_and_evicted(mode):
    trace = [
        r(0, A_B_P),  # A, B never seen: cold, cold; the partial block
        r(1, range(100, 121)),  # 5 full + 1 partial: needs 6 of the 7 blocks
        r(2, A_B_P),  # A still cached (freed last); B was evicted by r1
        r(3, range(8)),  # A, B aligned: B cached, but vLLM recomputes the last token
    ]
    why = rows(mode, trace)
    assert why["r0"].counts() == dict(cold=2, evicted=0, partial=1, last_token=0,
                                      after_miss=0, salt=0, lora=0)
    assert why["r1"].cold == 5 and why["r1"].partial == 1
    # Free queue after r0: never-used 4..7, then r0's partial block 3, B (2), A (1). r1
    # takes six blocks from the front: 4..7, 3, 2 -> B's hash is evicted, A survives.
    assert why["r2"].counts() == dict(cold=0, evicted=1, partial=1, last_token=0,
                                      after_miss=0, salt=0, lora=0)
    assert why["r2"].evicted_by == (EvictedBy(step_of(mode, trace, "r1"), "r1", 1),)
    assert why["r2"].hit_sources == (HitSource("r0", False, 1, 0, 0),)
    # r2 computed B again; r3 (A, B, aligned) hits A and recomputes B.
    assert why["r3"].counts() == dict(cold=0, evicted=0, partial=0, last_token=1,
                                      after_miss=0, salt=0, lora=0)


@pytest.mark.parametrize("mode", MODES)
def test_salt_and_lora(mode):
    trace = [
        r(0, A_B_P, salt="a"),
        r(1, A_B_P, salt="b"),  # same tokens, cached under salt a
        r(2, A_B_P, salt="b", lora="x"),  # same tokens, cached under no adapter
        r(3, A_B_P, salt="b"),  # its own earlier copy is still cached: a hit
    ]
    why = rows(mode, trace)
    assert (why["r0"].cold, why["r0"].partial) == (2, 1)
    assert (why["r1"].salt, why["r1"].cold, why["r1"].partial) == (2, 0, 1)
    assert (why["r2"].lora, why["r2"].salt, why["r2"].partial) == (2, 0, 1)
    assert why["r3"].missed == 1 and why["r3"].partial == 1
    assert why["r3"].hit_sources == (HitSource("r1", False, 2, 0, 1),)


@pytest.mark.parametrize("mode", MODES)
def test_hit_sources_name_the_conversation_and_the_first_computer(mode):
    system = tuple(range(8))  # two blocks every conversation starts with
    trace = [
        r(0, system + (50, 51, 52, 53, 54), conv="c1"),
        r(1, system + (50, 51, 52, 53, 54, 60, 61, 62, 63, 64), conv="c1"),
        r(2, system + (70, 71, 72, 73, 74), conv="c2"),
    ]
    why = rows(mode, trace)
    assert why["r1"].hit_sources == (HitSource("r0", True, 3, 0, 2),)
    assert why["r2"].hit_sources == (HitSource("r0", False, 2, 0, 1),)
    assert (why["r2"].cold, why["r2"].partial) == (1, 1)


def test_after_miss_is_a_cached_block_past_the_first_miss():
    """vLLM 0.33 frees a request's blocks last block first and touches a whole hit
    prefix together, so in a plain replay a block is never evicted after its parent: no
    trace reaches after_miss on one full-attention group. The classifier is fed the lookup
    directly: block 0 missed (not held), block 1's hash held by vLLM's hash map."""
    t = MissTracker(BS)
    q = req(0, range(12))  # three full blocks, aligned
    seen = SeenLookup(hashes=(b"a", b"b", b"c"), start=0, cached=(False, True, True))
    why = t.classify(q, seen, hit_blocks=0)
    # Block 2 is the last block but not the first missed: after_miss, not last_token.
    assert (why.cold, why.after_miss, why.last_token) == (1, 2, 0)


# -- the report and --json ------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_json_rows_and_report_give_reasons(tmp_path, capsys, mode):
    """The hand-worked trace above, through the CLI: per-row miss_blocks and the totals."""
    import json

    from tui.cli import main

    lines = [{"request_id": q.request_id, "prompt_token_ids": list(q.prompt_token_ids),
              "output_len": 1, "arrival_time": q.arrival_time}
             for q in (r(0, A_B_P), r(1, range(100, 121)), r(2, A_B_P), r(3, range(8)))]
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "out.json"
    code = main([str(trace), "--headless", "--no-progress", "--json", str(out), "--mode", mode,
                 "--block-size", "4", "--num-gpu-blocks-override", "8"])
    assert code == 0
    doc = json.loads(out.read_text())
    rows = {x["request_id"]: x for x in doc["requests"]}
    assert rows["r2"]["miss_blocks"]["evicted"] == 1
    assert rows["r2"]["evicted_by"][0]["request_id"] == "r1"
    assert rows["r2"]["hit_sources"] == [{"request_id": "r0", "same_conversation": False,
                                          "blocks": 1, "first_block": 0, "last_block": 0}]
    assert rows["r3"]["miss_blocks"]["last_token"] == 1
    # cold 2 + 5, partial 1 + 1 + 1, evicted 1, last token 1: every missed block, once.
    assert doc["reasons"]["miss_blocks"] == dict(cold=7, evicted=1, partial=3, last_token=1,
                                                 after_miss=0, salt=0, lora=0)
    missed = sum(x["prompt_blocks"] - x["hit_blocks"] for x in doc["requests"])
    assert sum(doc["reasons"]["miss_blocks"].values()) == missed
    assert doc["reasons"]["top_prefixes"][0] == {
        "request_id": "r0", "tokens_saved": 8, "requests": 2, "blocks": 1,
        "same_conversation_tokens": 0}
    report = capsys.readouterr().out
    assert "Why prompt blocks missed" in report and "request r0: 1 block, reused by 2 requests" in report


@pytest.mark.parametrize("layout", ["1:1", "5:1"])
@pytest.mark.parametrize("detail", [True, False])
def test_reasons_add_up_on_hybrid_layouts(layout, detail):
    """Several KV cache groups (--hf-config): reasons read the full-attention group and
    still add up to every missed block, on a pool that evicts."""
    from tests.test_hybrid_layout import conversations, settings

    rows = [r for rec in SequentialReplay(V1Manager(settings(layout, 60)), conversations(),
                                          detail=detail) for r in rec.rows]
    served = [r for r in rows if r.outcome.served]
    assert served and all(r.reasons is not None for r in served)
    for r in served:
        assert r.reasons.missed == r.prompt_blocks - r.hit_blocks
        assert sum(s.blocks for s in r.reasons.hit_sources) == r.hit_blocks
    assert sum(r.reasons.evicted for r in served) > 0
