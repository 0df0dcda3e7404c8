"""The client simulator: determinism, the multi-turn prefix property, ShareGPT, safe writes."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.trace.generate import add_gen_arguments, generate, load_sharegpt, run_gen, write_jsonl
from engine.trace.reader import read_trace

ROOT = Path(__file__).resolve().parents[1]
SHAREGPT = ROOT.parent / "shared" / "data" / "sharegpt" / "sharegpt_v3_first1000.jsonl"


def by_conversation(path: Path) -> dict[str, list]:
    convs = defaultdict(list)
    for r in read_trace(path):
        convs[r.conversation_id].append(r)
    return convs


def assert_prefix_property(path: Path) -> int:
    """Each turn's prompt + output starts the next turn's prompt; returns turns checked."""
    checked = 0
    for reqs in by_conversation(path).values():
        assert [r.turn for r in reqs] == list(range(len(reqs)))  # in order, none missing
        for a, b in zip(reqs, reqs[1:]):
            done = a.prompt_token_ids + a.output_token_ids
            assert b.prompt_token_ids[: len(done)] == done
            assert b.arrival_time > a.arrival_time
            checked += 1
    return checked


def test_deterministic_for_a_seed():
    a = generate("multi-turn", num_requests=30, seed=5)
    assert a == generate("multi-turn", num_requests=30, seed=5)
    assert a != generate("multi-turn", num_requests=30, seed=6)
    assert len(a) == 30


def test_poisson_arrivals():
    rows = generate("single-turn", num_requests=2000, rate=4.0, seed=1)
    times = [r["arrival_time"] for r in rows]
    gaps = [b - a for a, b in zip([0.0] + times, times)]
    assert all(g > 0 for g in gaps)
    assert abs(sum(gaps) / len(gaps) - 0.25) < 0.025  # mean gap 1/rate, within 10%


def test_multi_turn_prefix_property_through_the_reader(tmp_path):
    p = tmp_path / "mt.jsonl"
    write_jsonl(generate("multi-turn", num_requests=60, seed=3), p)
    assert assert_prefix_property(p) > 20
    reqs = list(read_trace(p))
    assert len(reqs) == 60
    # Every conversation opens with the same system prompt: cross-conversation sharing.
    first = [r for r in reqs if r.turn == 0]
    assert len({r.prompt_token_ids[:30] for r in first}) == 1
    # Conversations interleave: some request lands between two turns of another conversation.
    positions = defaultdict(list)
    for r in reqs:
        positions[r.conversation_id].append(r.index)
    assert any(p[-1] - p[0] + 1 > len(p) for p in positions.values())


def test_multi_turn_rows_resend_the_whole_history():
    rows = generate("multi-turn", num_requests=40, seed=0)
    convs = defaultdict(list)
    for row in rows:
        convs[row["conversation_id"]].append(row)
    for turns in convs.values():
        for a, b in zip(turns, turns[1:]):
            assert b["messages"][: len(a["messages"])] == a["messages"]
            assert b["messages"][len(a["messages"])] == {"role": "assistant", "content": a["output"]}
            assert b["messages"][-1]["role"] == "user"
    words = [len(m["content"].split()) for row in rows for m in row["messages"] if m["role"] == "user"]
    assert 20 <= min(words) and max(words) <= 230  # tens to a few hundred words


def test_single_turn_has_turn_zero_only(tmp_path):
    p = tmp_path / "st.jsonl"
    write_jsonl(generate("single-turn", num_requests=25, seed=2), p)
    reqs = list(read_trace(p))
    assert len(reqs) == 25
    assert {r.turn for r in reqs} == {0}
    assert len({r.conversation_id for r in reqs}) == 25
    assert all(r.output_token_ids for r in reqs)


def test_bundled_traces_are_reproducible(tmp_path):
    for kind, name in [("multi-turn", "multi_turn.jsonl"), ("single-turn", "single_turn.jsonl")]:
        out = tmp_path / name
        write_jsonl(generate(kind, num_requests=100, seed=0), out)
        assert out.read_bytes() == (ROOT / "traces" / name).read_bytes(), f"traces/{name} is stale"


def test_sharegpt_parsing_hand_worked(tmp_path):
    h = lambda v: {"from": "human", "value": v}  # noqa: E731
    g = lambda v: {"from": "gpt", "value": v}  # noqa: E731
    records = [
        {"id": "ok", "conversations": [h("q1"), g("a1"), h("q2"), g("a2")]},
        {"id": "starts-with-gpt", "conversations": [g("a0"), h("q1"), g("a1")]},
        {"id": "system", "conversations": [{"from": "system", "value": "s"}, h("q"), g("a")]},
        {"id": "twice", "conversations": [h("q1"), h("q2"), g("a")]},
        {"id": "unanswered-tail", "conversations": [h("q1"), g("a1"), h("q2")]},
        {"id": "empty", "conversations": []},
        {"id": "no-conversations"},
        "not a record",
    ]
    as_json = tmp_path / "sg.json"
    as_json.write_text(json.dumps(records))
    as_jsonl = tmp_path / "sg.jsonl"
    as_jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    want = [("ok", [("q1", "a1"), ("q2", "a2")]), ("unanswered-tail", [("q1", "a1")])]
    assert load_sharegpt(as_json) == want
    assert load_sharegpt(as_jsonl) == want
    with pytest.raises(UserError, match="only 3 multi-turn requests available, asked for 4"):
        generate("multi-turn", num_requests=4, sharegpt=as_json)


def test_sharegpt_errors(tmp_path):
    with pytest.raises(UserError, match="no such ShareGPT file"):
        load_sharegpt(tmp_path / "nope.json")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "conversations": []}\n{oops\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: invalid JSON"):
        load_sharegpt(bad)


def test_real_sharegpt(tmp_path):
    if not SHAREGPT.is_file():
        pytest.skip(f"{SHAREGPT} not present")
    convs = load_sharegpt(SHAREGPT)
    ids = {cid for cid, _ in convs}
    assert "QWJhYvA_0" in ids and "hRPPgZT_11" not in ids  # the latter opens with a gpt turn
    assert len(convs) == 603
    p = tmp_path / "sg_mt.jsonl"
    write_jsonl(generate("multi-turn", num_requests=80, seed=0, sharegpt=SHAREGPT), p)
    assert assert_prefix_property(p) > 10
    st = generate("single-turn", num_requests=50, seed=0, sharegpt=SHAREGPT)
    firsts = {cid: pairs[0] for cid, pairs in convs}
    for row in st:
        assert row["turn"] == 0
        assert (row["messages"][0]["content"], row["output"]) == firsts[row["conversation_id"]]


def test_write_jsonl_refuses_to_overwrite(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text("old\n")
    with pytest.raises(UserError) as ei:
        write_jsonl([{"prompt": "x"}], p)
    assert str(ei.value) == f"{p} exists; pass --force to overwrite"
    assert p.read_text() == "old\n"
    assert write_jsonl([{"prompt": "x"}, {"prompt": "y"}], p, force=True) == 2
    assert p.read_text() == '{"prompt": "x"}\n{"prompt": "y"}\n'
    assert sorted(f.name for f in tmp_path.iterdir()) == ["t.jsonl"]  # no temp file left


def test_write_jsonl_failure_leaves_old_file(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text("old\n")

    def rows():
        yield {"prompt": "x"}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_jsonl(rows(), p, force=True)
    assert p.read_text() == "old\n"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["t.jsonl"]
    with pytest.raises(UserError, match="directory .* does not exist"):
        write_jsonl([], tmp_path / "no" / "t.jsonl")


def test_cli_arguments(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_gen_arguments(parser)
    out = tmp_path / "g.jsonl"
    args = parser.parse_args(["--kind", "multi-turn", "-o", str(out), "--num-requests", "7", "--seed", "4"])
    assert (args.rate, args.force, args.sharegpt) == (1.0, False, None)
    assert run_gen(args) == 0
    assert capsys.readouterr().out == f"wrote 7 requests to {out}\n"
    assert len(list(read_trace(out))) == 7
    with pytest.raises(UserError, match="exists; pass --force"):
        run_gen(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["--kind", "chat", "-o", "x"])


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"num_requests": 0}, "--num-requests must be an int >= 1 (got 0)"),
        ({"num_requests": 5, "rate": 0.0}, "--rate must be a positive number of requests per second (got 0.0)"),
        ({"num_requests": 5, "rate": float("nan")}, "--rate must be a positive number of requests per second (got nan)"),
    ],
)
def test_bad_settings(kw, message):
    with pytest.raises(UserError) as ei:
        generate("multi-turn", **kw)
    assert str(ei.value) == message
