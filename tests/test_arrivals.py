"""Serve mode's arrivals: open loop (trace times) and --closed-loop (a conversation's next
turn waits for the previous turn's reply, plus the trace's gap or --think-time)."""

from __future__ import annotations

import pytest

from engine.errors import UserError
from engine.model import TraceRequest
from engine.replay.arrivals import Arrivals
from engine.settings import ServeSettings


def turn(index: int, at: float, conv: str | None = None, rid: str | None = None) -> TraceRequest:
    return TraceRequest(index=index, line=index + 1, request_id=rid or f"r{index}",
                        arrival_time=at, prompt_token_ids=(1,), conversation_id=conv)


def ids(due) -> list[tuple[str, float]]:
    return [(r.request_id, t) for r, t in due]


def test_open_loop_sends_at_trace_times_never_going_back():
    a = Arrivals([turn(0, 1.0, "c"), turn(1, 0.5), turn(2, 2.0, "c")])
    assert a.next_time() == 1.0 and ids(a.due(0.9)) == []
    assert ids(a.due(1.0)) == [("r0", 1.0), ("r1", 1.0)]  # 0.5 after 1.0 counts as 1.0
    assert ids(a.due(5.0)) == [("r2", 2.0)] and a.next_time() is None


def test_closed_loop_waits_for_the_reply_then_the_trace_gap():
    a = Arrivals([turn(0, 0.0, "c"), turn(1, 0.5), turn(2, 1.0, "c")], closed_loop=True)
    assert ids(a.due(0.0)) == [("r0", 0.0)]
    assert ids(a.due(0.5)) == [("r1", 0.5)]
    assert ids(a.due(1.0)) == []  # c's turn 1 waits: turn 0 is still running
    assert a.next_time() is None
    a.done(turn(0, 0.0, "c"), 2.0)  # turn 0 finished at 2.0; the trace's gap is 1.0
    assert a.next_time() == 3.0 and ids(a.due(2.9)) == []
    assert ids(a.due(3.0)) == [("r2", 3.0)] and a.delayed_turns == 1


def test_closed_loop_reply_before_the_next_turn_is_read():
    first = turn(0, 0.0, "c")
    a = Arrivals([first, turn(1, 1.0, "c")], closed_loop=True)
    assert ids(a.due(0.0)) == [("r0", 0.0)]
    a.done(first, 0.4)
    assert ids(a.due(1.0)) == [] and a.next_time() == 1.4  # 0.4 + the gap of 1.0
    assert ids(a.due(1.4)) == [("r1", 1.4)]


def test_think_time_sends_a_turn_before_its_trace_time():
    first = turn(0, 0.0, "c")
    a = Arrivals([first, turn(1, 3.0), turn(2, 10.0, "c")], closed_loop=True, think_time_s=0.5)
    assert ids(a.due(0.0)) == [("r0", 0.0)]
    a.done(first, 2.0)  # reads ahead to c's next turn; r1 keeps its own trace time
    assert a.next_time() == 2.5
    assert ids(a.due(2.5)) == [("r2", 2.5)] and ids(a.due(3.0)) == [("r1", 3.0)]


def test_think_time_needs_the_closed_loop():
    with pytest.raises(UserError, match="--think-time needs --closed-loop"):
        ServeSettings(think_time_s=1.0).validate()


@pytest.mark.parametrize("closed", [False, True], ids=["open", "closed"])
def test_closed_loop_turn_hits_the_previous_reply(closed):
    """Turn 0: a 32-token prompt and a 20-token reply (sync scheduler, 0.02 s an iteration:
    done at 0.40 s, 51 tokens computed: 3 full blocks cached). Turn 1 (prompt 0 + reply 0
    + 10 tokens) is in the trace at 0.05 s. Open loop: it arrives while turn 0 has decoded
    2 tokens and hits the prompt's 2 blocks (32 tokens); closed loop: it is sent at 0.40 +
    0.05 s and hits 3 blocks (48 tokens), the reply's first 16 tokens included."""
    from tests.test_serve import backend, run

    p0, o0 = tuple(range(100, 132)), tuple(range(500, 520))
    t0 = TraceRequest(index=0, line=1, request_id="c-t0", arrival_time=0.0, prompt_token_ids=p0,
                      output_token_ids=o0, conversation_id="c", turn=0)
    t1 = TraceRequest(index=1, line=2, request_id="c-t1", arrival_time=0.05,
                      prompt_token_ids=p0 + o0 + tuple(range(900, 910)), output_len=2,
                      conversation_id="c", turn=1)
    replay, records = run(backend(64, async_sched=False, closed_loop=closed), [t0, t1])
    rows = {r.request_id: r for rec in records for r in rec.rows}
    assert rows["c-t1"].hit_tokens == (48 if closed else 32)
    assert rows["c-t0"].finish_time_s == pytest.approx(0.40)
    sent = 0.40 + 0.05 if closed else 0.06  # open: the first iteration after 0.05 s
    admitted = next(rec for rec in records if any(r.request_id == "c-t1" for r in rec.admitted))
    assert admitted.clock == pytest.approx(sent) and replay.summary().delayed_turns == closed
