"""The inspector's replica selector (--instances N): r / R show another replica's own
steps, pool and requests, at the same point in trace time, without replaying.

chat_trace() has 13 requests; round-robin sends request i to replica i mod 2, so replica 0
runs requests 0, 2, ..., 12 (7 steps) and replica 1 runs 1, 3, ..., 11 (6 steps).
"""

from __future__ import annotations

from engine.backends import BuildOptions, lookup
from tests.test_tui_support import CHAT, at_step, chat_trace, wait_until
from tui.app import InspectorApp
from tui.widgets.request_panel import RequestPanel


def replicas_app(start: int = 0) -> InspectorApp:
    options = BuildOptions(CHAT, instances=2, router="round-robin", replica=start)
    return InspectorApp(None, lookup("v1", "sequential"), options, requests=chat_trace())


def cached(pool) -> dict[int, bytes]:
    """Block id -> the hash a block is cached under (in use or cached-free)."""
    return {bid: slot.block_hash for bid, slot in enumerate(pool) if slot.block_hash is not None}


def request_ids(app) -> list[str]:
    return [r.request_id for rec in app.main.history.records for r in rec.rows]


async def shown(pilot, app, replica: int, step: int) -> None:
    await wait_until(pilot, lambda: app.main.replica_set.shown == replica
                     and at_step(app, step)())


async def test_r_switches_replicas_keeping_trace_time_and_back():
    app = replicas_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, lambda: app.main.feed.replay_done and app.main.history.position >= 0)
        main = app.main
        assert main.header.replica == "replica 0 of 2"
        assert "replica 0 of 2 (this replica only)" in str(main.totals.border_title)
        assert request_ids(app) == [q.request_id for q in chat_trace()][::2]
        vllm = main.feed.backend.replicas  # vLLM's own objects, one per replica

        # Each replica's last step: the pool map holds what vLLM's pool of that replica
        # holds now (the replay is over; freeing since then changed no hash).
        await pilot.press("end")
        await shown(pilot, app, 0, 6)
        assert main.pool_map.pool is main.history.pool
        at_end = cached(main.pool_map.pool)
        assert at_end == cached(vllm[0].scan_pool()) and at_end
        await pilot.press("r")
        await shown(pilot, app, 1, 5)  # request 11, the last before request 12
        assert main.header.replica == "replica 1 of 2"
        assert request_ids(app) == [q.request_id for q in chat_trace()][1::2]
        assert main.sequences.row_count == 6
        assert cached(main.pool_map.pool) == cached(vllm[1].scan_pool()) != at_end
        assert {rec.replica for rec in main.history.records} == {1}
        assert app.query_one(RequestPanel).record is main.history.records[5]

        # Mid-trace: replica 0's step 3 is request 6; replica 1's last before it is
        # request 5 (its step 2). Switching back lands on request 6 again, not on
        # replica 0's last step before request 5.
        await pilot.press("R")
        await shown(pilot, app, 0, 6)
        main.goto(3)
        await shown(pilot, app, 0, 3)
        pool_before = list(main.history.pool)
        rec_before = main.history.current
        await pilot.press("r")
        await shown(pilot, app, 1, 2)
        assert main.history.current.request.request.index == 5
        await pilot.press("r")  # two replicas: r cycles back
        await shown(pilot, app, 0, 3)
        assert main.history.current is rec_before
        assert list(main.history.pool) == pool_before
        assert main.pool_map.pool is main.history.pool
        assert main.sequences.cursor_row == 3 and main.sequences.row_count == 7
        made = len(main.feed.records)
        assert made == len(chat_trace())  # no replay again: 13 records in all


async def test_find_goes_to_the_replica_that_served_the_request():
    app = replicas_app(start=1)
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, lambda: app.main.feed.replay_done and app.main.history.position >= 0)
        assert app.main.header.replica == "replica 1 of 2"
        app.main.find("c1-t1")  # request 4: replica 0's step 2
        await shown(pilot, app, 0, 2)
        assert app.main.history.current.request.request_id == "c1-t1"


async def test_serve_each_replicas_pool_is_vllms_pool_of_that_replica():
    """Serve mode: the last iteration of each replica shows vLLM's own pool of it, slot
    for slot (every request has finished: nothing changed after it)."""
    from engine.settings import ServeSettings
    from tests.test_tui_support import TINY, at_serve_step, serve_trace

    options = BuildOptions(TINY, ServeSettings(), instances=2, router="round-robin", replica=0)
    app = InspectorApp(None, lookup("v1", "serve"), options, requests=serve_trace())
    async with app.run_test(size=(160, 50)) as pilot:
        main = app.main
        await wait_until(pilot, lambda: main.feed.replay_done and main.history.position >= 0)
        vllm = main.feed.backend.replicas
        for k in (0, 1):
            await pilot.press("end")
            last = len(main.history) - 1
            await wait_until(pilot, lambda: main.replica_set.shown == k and at_serve_step(app, last)())
            assert main.header.replica == f"replica {k} of 2"
            assert list(main.pool_map.pool) == vllm[k].scan_pool()
            assert {rec.replica for rec in main.history.records} == {k}
            await pilot.press("r")
        # Round-robin: q0, q2, q4 on replica 0; q1, q3, q5 on replica 1.
        served = {k: sorted(r.request_id for rec in main.replica_set.steps[k].history.records
                            for r in rec.rows) for k in (0, 1)}
        assert served == {0: ["q0", "q2", "q4"], 1: ["q1", "q3", "q5"]}


def test_help_and_readme_name_the_replica_key():
    from pathlib import Path

    from tui.widgets.help_text import KEYS

    assert any(key == "r / R" and "replica" in text for key, text in KEYS)
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    keys = readme.split("Keys: ", 1)[1].split("\n\n", 1)[0]
    assert "`r`/`R` the next / previous replica" in keys


def _notes(app) -> list[str]:
    notes: list[str] = []
    app.main.notify = lambda message, **kw: notes.append(str(message))
    return notes


async def test_r_replays_on_until_another_replica_gets_a_request():
    # Session affinity: 600 turns of c0 (replica 0), then c1's first turn (replica 1). The
    # inspector makes only Feed.RUN_AHEAD (512) records ahead of the cursor, so at step 0
    # replica 1 has no step yet: r must replay on until it has one, then show it.
    import dataclasses

    from tests.conftest import req

    trace = [dataclasses.replace(req(i, (7, 7, 7, 7, 8), output_len=1), conversation_id="c0")
             for i in range(600)]
    trace.append(dataclasses.replace(req(600, (9, 9, 9, 9, 8), output_len=1),
                                     conversation_id="c1"))
    options = BuildOptions(CHAT, instances=2, router="session", replica=0)
    app = InspectorApp(None, lookup("v1", "sequential"), options, requests=trace)
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, lambda: app.main.history.position == 0)
        assert not app.main.replica_set.steps[1].history.records
        await pilot.press("r")
        await shown(pilot, app, 1, 0)
        assert app.main.history.current.request.request.request_id == "r600"
        assert app.main.header.replica == "replica 1 of 2"


async def test_r_says_which_replica_got_no_request_and_why():
    # Every request opens with one system prompt: prefix-aware sends them all to replica 0.
    from tests.test_router_bounded import shared_prompt_trace

    options = BuildOptions(CHAT, instances=2, router="prefix-aware", replica=0)
    app = InspectorApp(None, lookup("v1", "sequential"), options,
                       requests=shared_prompt_trace(6))
    async with app.run_test(size=(160, 50)) as pilot:
        notes = _notes(app)
        await wait_until(pilot, lambda: app.main.history.position == 0)
        await pilot.press("r")
        await wait_until(pilot, lambda: bool(notes))
        assert notes[0].startswith("replica 1 received no request: prefix-aware sends")
        assert app.main.replica_set.shown == 0


async def test_r_pressed_before_the_first_step_shows_the_next_replica_once_it_has_one():
    app = replicas_app()
    async with app.run_test(size=(160, 50)) as pilot:
        assert app.main.history.position < 0  # vLLM is still being built
        await pilot.press("r")
        await shown(pilot, app, 1, 0)
        assert [r.request_id for r in app.main.history.current.rows] == [chat_trace()[1].request_id]
        assert app.main.header.replica == "replica 1 of 2"
        await pilot.press("r")
        await shown(pilot, app, 0, 0)
        assert [r.request_id for r in app.main.history.current.rows] == [chat_trace()[0].request_id]
