"""--instances N --router NAME: N real vLLM engines behind a router (engine.replay.replicas).

Hand-made traces at block size 4: conversations whose turn t is the conversation's own 8
tokens, 4 more per turn, and a partial block (one token unique to the turn), so turn t + 1
hits exactly 2 + t blocks of turn t on the replica that served turn t.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from engine.backends import BuildOptions, lookup
from engine.model import TraceRequest
from engine.settings import EngineSettings, ServeSettings
from tests.conftest import req

BS = 4
SETTINGS = EngineSettings(block_size=BS, num_blocks=64)
MODES = ("sequential", "serve")


def turn(index: int, conv: int, t: int) -> TraceRequest:
    own = tuple(range(1000 * (conv + 1), 1000 * (conv + 1) + 8 + 4 * t))
    marker = 500_000 + index  # the turn's partial block: never shared
    # One second apart: in serve mode each request finishes before the next arrives.
    return dataclasses.replace(req(index, own + (marker,), output_len=1, arrival=float(index)),
                               conversation_id=f"c{conv}", turn=t)


def conversations(n_conv: int, turns: int) -> list[TraceRequest]:
    """Interleaved: c0 t0, c1 t0, c2 t0, c0 t1, ..."""
    return [turn(i, i % n_conv, i // n_conv) for i in range(n_conv * turns)]


def write_trace(path, requests) -> Path:  # noqa: ANN001
    """The requests as a JSONL trace of token ids, one output token each."""
    path.write_text("".join(json.dumps({
        "request_id": q.request_id, "prompt_token_ids": list(q.prompt_token_ids),
        "output_len": 1, "arrival_time": q.arrival_time,
        **({"conversation_id": q.conversation_id} if q.conversation_id is not None else {}),
    }) + "\n" for q in requests))
    return path


def build(mode: str, instances: int | None, router: str = "round-robin"):
    serve = ServeSettings() if mode == "serve" else None
    return lookup("v1", mode).build(BuildOptions(SETTINGS, serve, instances=instances,
                                                 router=router))


def replay(mode: str, trace, instances: int | None, router: str = "round-robin"):
    records = list(build(mode, instances, router).replay(trace, detail=False))
    assert [r.error for r in records if r.error] == []
    return records


def _row_facts(records):
    return [(rec.index, r.request_id, r.outcome, r.hit_tokens, r.evicted_blocks,
             r.output_tokens, r.reasons, r.finish_iteration)
            for rec in records for r in rec.rows]


@pytest.mark.parametrize("mode", MODES)
def test_round_robin_with_one_instance_is_the_single_instance_replay(mode):
    trace = conversations(2, 3) + [dataclasses.replace(turn(6, 0, 0), arrival_time=6.0)]
    single = replay(mode, trace, None)
    routed = replay(mode, trace, 1)
    assert _row_facts(routed) == _row_facts(single)
    assert routed[-1].totals == single[-1].totals
    assert {r.replica for rec in routed for r in rec.rows} == {0}


@pytest.mark.parametrize("mode", MODES)
def test_prefix_aware_never_routes_worse_than_round_robin_on_repeated_conversations(mode):
    trace = conversations(3, 4)
    aware = replay(mode, trace, 2, "prefix-aware")
    rr = replay(mode, trace, 2, "round-robin")
    rows = {r.request_id: r for rec in aware for r in rec.rows}
    # Every later turn goes where its conversation's first turn went ...
    for q in trace:
        first = rows[f"r{int(q.conversation_id[1:])}"].replica
        assert rows[q.request_id].replica == first
    # ... so it hits all of its previous turn: 2 + 3 + 4 blocks per conversation.
    assert aware[-1].totals.blocks_reused == 3 * (2 + 3 + 4)
    assert aware[-1].totals.hits >= rr[-1].totals.hits
    assert rr[-1].totals.blocks_reused < aware[-1].totals.blocks_reused


@pytest.mark.parametrize("mode", MODES)
def test_session_keeps_a_conversation_on_one_replica(mode):
    trace = conversations(3, 2)
    rows = [r for rec in replay(mode, trace, 2, "session") for r in rec.rows]
    home = {}
    for r in sorted(rows, key=lambda r: r.request.index):
        home.setdefault(r.request.conversation_id, r.replica)
        assert r.replica == home[r.request.conversation_id]
    # First turns round-robin over the replicas.
    assert [home[c] for c in ("c0", "c1", "c2")] == [0, 1, 0]


def test_cli_reports_each_replica_and_the_sum(tmp_path, capsys):
    from tui.cli import main

    trace = write_trace(tmp_path / "t.jsonl", conversations(3, 2))
    out = tmp_path / "o.json"
    code = main([str(trace), "--headless", "--no-progress", "--json", str(out), "--block-size",
                 "4", "--num-gpu-blocks-override", "64", "--instances", "2", "--router",
                 "session"])
    assert code == 0
    doc = json.loads(out.read_text())
    assert (doc["settings"]["instances"], doc["settings"]["router"]) == (2, "session")
    reps = doc["status"]["replicas"]
    assert [r["replica"] for r in reps] == [0, 1]
    assert sum(r["requests"] for r in reps) == doc["totals"]["requests"] == 6
    assert sum(r["hit_tokens"] for r in reps) == doc["totals"]["hit_tokens"]
    assert {row["replica"] for row in doc["requests"]} == {0, 1}
    assert "REPLICAS (2, router session)" in capsys.readouterr().out


def test_router_without_instances_and_instances_in_the_inspector_are_one_line(tmp_path, capsys):
    from tui.cli import main

    trace = tmp_path / "t.jsonl"
    trace.write_text('{"prompt_token_ids": [1, 2, 3]}\n')
    assert main([str(trace), "--headless", "--router", "session"]) == 2
    assert "--router goes with --instances" in capsys.readouterr().err
    assert main([str(trace), "--instances", "2", "--replica", "2"]) == 2
    assert "--replica must be 0 to 1" in capsys.readouterr().err
    assert main([str(trace), "--headless", "--instances", "2", "--replica", "0"]) == 2
    assert "--replica is for the inspector" in capsys.readouterr().err
    assert main([str(trace), "--headless", "--instances", "0"]) == 2
    assert "--instances must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("mode", MODES)
def test_one_replicas_records_rebuild_its_pool(mode):
    """The inspector's --replica K: every replica's records, each numbered as its
    replica's own steps with its own totals; replica 1's pool deltas rebuild vLLM's own
    pool of that replica."""
    from engine.replay.history import History

    trace = conversations(3, 3)
    serve = ServeSettings() if mode == "serve" else None
    backend = lookup("v1", mode).build(BuildOptions(SETTINGS, serve, instances=2,
                                                    router="session", replica=1))
    history = History(SETTINGS.num_blocks)
    records = []
    own = {0: [], 1: []}
    for rec in backend.replay(trace, detail=True):
        own[rec.replica].append(rec)
        if rec.replica != 1:
            continue
        records.append(rec)
        history.append(rec)
        history.seek(len(records) - 1)
        # Replica 1's pool does not change until its next record.
        assert history.pool == backend.replicas[1].scan_pool()
    assert [r.index for r in records] == list(range(len(records)))
    assert [r.index for r in own[0]] == list(range(len(own[0]))) and own[0]
    # Each replica's records carry its own totals: its last one counts its own rows.
    for k in (0, 1):
        assert own[k][-1].totals.requests == sum(len(r.rows) for r in own[k]) > 0
    assert sum(len(r.rows) for k in (0, 1) for r in own[k]) == len(trace)
    rows = [r for rec in records for r in rec.rows]
    assert rows and {r.replica for r in rows} == {1}
    assert {r.request.conversation_id for r in rows} == {"c1"}  # session: c1 is on 1


def test_serve_replicas_each_with_a_cpu_tier_sum_their_tiers(tmp_path):
    """Every replica has its own CPU tier: the report sums them (this was a TypeError)."""
    from tui.cli import main

    trace = write_trace(tmp_path / "t.jsonl", conversations(3, 2))
    out = tmp_path / "o.json"
    code = main([str(trace), "--headless", "--no-progress", "--json", str(out), "--block-size",
                 "4", "--num-gpu-blocks-override", "64", "--mode", "serve", "--num-cpu-blocks",
                 "20", "--instances", "2"])
    assert code == 0
    tier = json.loads(out.read_text())["status"]["serve"]["tier"]
    assert tier["num_blocks"] == 40  # 20 on each replica
    assert tier["jobs_started"] == tier["jobs_finished"]
