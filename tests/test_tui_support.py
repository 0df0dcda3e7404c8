"""Shared scenarios and waits for the TUI tests (no tests here).

Two tiny traces at block size 4 keep every test fast and every screen small enough to read:
``chat_trace`` (three conversations sharing a system prompt, in a roomy pool) and
``eviction_trace`` (distinct prompts in a 24-block pool, so cached blocks get evicted).
Serve mode has ``serve_trace`` (requests arriving together, sharing a prefix, in a
24-block pool, so vLLM's scheduler preempts).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.model import TraceRequest
from engine.backends import BuildOptions, lookup
from engine.settings import EngineSettings, ServeSettings
from engine.trace.reader import TraceSource

CHAT = EngineSettings(block_size=4, num_blocks=64)
TINY = EngineSettings(block_size=4, num_blocks=24)
EVICTION_STEP = 4
SYSTEM = tuple(range(100, 112))  # three full blocks every conversation starts with


def chat_trace(n: int = 12) -> list[TraceRequest]:
    """Turn k of conversation c sends the system prompt and all earlier turns: each turn's
    prompt extends the previous one, as a chat client does. A last request resends the
    first prompt exactly: block-aligned and fully cached, so vLLM recomputes its last
    block (R)."""
    out = []
    for i in range(n):
        conv, turn = i % 3, i // 3
        body = tuple(1000 * (conv + 1) + k for k in range(4 + 4 * turn))
        tail = (7,) if i % 2 else ()  # odd steps end mid-block (a partial block)
        out.append(TraceRequest(
            index=i, line=i + 1, request_id=f"c{conv}-t{turn}", arrival_time=i * 0.5,
            prompt_token_ids=SYSTEM + body + tail, output_len=3,
            conversation_id=f"c{conv}", turn=turn,
        ))
    first = out[0]
    out.append(TraceRequest(
        index=n, line=n + 1, request_id="c0-t0-retry", arrival_time=n * 0.5,
        prompt_token_ids=first.prompt_token_ids, output_len=3, conversation_id="c0", turn=0,
    ))
    return out


def eviction_trace() -> list[TraceRequest]:
    """Distinct 20-token prompts fill the 23 usable blocks of TINY; the fifth (step 4) has
    to evict cached blocks (E), and the sixth comes back to the first prompt, part of
    which is gone."""
    prompts = [tuple(5000 * (p + 1) + k for k in range(20)) for p in range(5)]
    prompts.append(prompts[0])
    return [
        TraceRequest(index=i, line=i + 1, request_id=f"r{i}", arrival_time=float(i),
                     prompt_token_ids=p, output_len=3)
        for i, p in enumerate(prompts)
    ]


def serve_trace() -> list[TraceRequest]:
    """Four requests arrive together and share the system prompt's three blocks (ref count
    4); a fifth joins at 0.1 s. Decoding 12 tokens each fills TINY's 23 usable blocks, so
    vLLM preempts the last running one (q4), and resumes it, with a fresh prefix lookup
    (counted apart as preempted), once the others finish. q5 arrives after everything
    has finished and resends q0's prompt: hits on cached-free blocks."""
    bodies = [tuple(1000 * (i + 1) + k for k in range(6)) for i in range(5)]
    bodies.append(bodies[0])
    arrivals = (0.0, 0.0, 0.0, 0.0, 0.1, 1.0)
    return [
        TraceRequest(index=i, line=i + 1, request_id=f"q{i}", arrival_time=t,
                     prompt_token_ids=SYSTEM + body, output_len=12)
        for i, (body, t) in enumerate(zip(bodies, arrivals))
    ]


def inspector_app(settings: EngineSettings, trace_path: str | None = None, *,
                  mode: str = "sequential", serve: ServeSettings | None = None, **kw):
    """The inspector as the CLI builds it: a registry entry and its build options."""
    from tui.app import InspectorApp

    entry = lookup("v1", mode)
    options = BuildOptions(settings, serve if entry.uses_scheduler else None, False)
    source = TraceSource(trace_path) if trace_path is not None else None
    return InspectorApp(source, entry, options, **kw)


def serve_app(**kw):
    return inspector_app(TINY, mode="serve", requests=serve_trace(), **kw)


def drawn_cell(pool_map, block_id: int):
    """(rich Style, glyph) of a block as the pool map draws it: read off its rendered
    line at the cell's column (the grid's geometry says where the cell is)."""
    grid = pool_map.grid
    row, col = divmod(block_id, grid.per_row)
    y = row * grid.row_height - round(pool_map.scroll_offset.y)
    x = grid.label + col * grid.cell + grid.pad
    at = 0
    for segment in pool_map.render_line(y):
        if at <= x < at + len(segment.text):
            return segment.style, segment.text[x - at]
        at += len(segment.text)
    raise AssertionError(f"block {block_id} is not drawn on line {y}")


def drawn_glyph(pool_map, block_id: int) -> str:
    return drawn_cell(pool_map, block_id)[1]


async def wait_until(pilot, cond: Callable[[], bool], timeout: float = 120.0) -> None:
    """Pump the app until ``cond()``; the first app in a process imports vLLM (seconds)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.02)
    await pilot.pause()


def at_step(app, index: int) -> Callable[[], bool]:
    """The cursor is at step ``index`` and the screen shows it."""
    return lambda: (
        app.main.shown_step == index and app.main.target is None
        and app.main.header.step == index + 1 and app.main.sequences.cursor_row == index
        and app.main.sequences.filled > index  # the requests table shows this step's results
        and app.main.header.total_final and app.main.header.status == ""  # nothing loading or playing
    )


async def goto_step(pilot, app, index: int) -> None:
    await wait_until(pilot, lambda: app.main.history.position >= 0)
    app.main.goto(index)
    await wait_until(pilot, at_step(app, index))


def at_serve_step(app, index: int) -> Callable[[], bool]:
    """Serve mode: the cursor is at step ``index``, shown, and the replay is complete."""
    return lambda: (
        app.main.shown_step == index and app.main.target is None
        and app.main.header.step == index + 1 and app.main.feed.replay_done
        and app.main.header.total_final and app.main.header.status == ""
    )


async def goto_serve_step(pilot, app, index: int) -> None:
    await wait_until(pilot, lambda: app.main.history.position >= 0 and app.main.feed.replay_done)
    app.main.goto(index)
    await wait_until(pilot, at_serve_step(app, index))
