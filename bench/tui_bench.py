"""Inspector responsiveness on a 100,000-block pool.

- time to first frame: from launching a fresh Python process to the app's first compositor
  frame (vLLM is still importing in a worker thread then; the goal is that it does not
  delay the screen);
- step latency: keypress (→) to the first frame drawn after the step is shown, p50 / p95
  over a few hundred steps of a generated multi-turn trace, at 160x50;
- top-speed play: the longest gap between frames while playing at 1,000 steps/s, i.e.
  whether playback ever blocks the UI.

Each part runs in its own process (``--child``) so imports and warm caches do not leak.
Run: ``python -m bench.tui_bench`` (part of ``make bench``).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUM_BLOCKS = 100_000
STEPS = 300
FIRST_FRAME_GOAL_S = 1.0
STEP_P95_GOAL_MS = 50.0


def generated_trace(n: int = 1500, seed: int = 0):
    """Multi-turn chats: a shared 512-token system prompt, each turn resending the whole
    history (so later turns hit the cache), conversations interleaved."""
    from engine.model import TraceRequest

    rnd = random.Random(seed)
    system = tuple(rnd.randrange(50_000) for _ in range(512))
    history: dict[int, tuple[int, ...]] = {}
    out = []
    for i in range(n):
        conv = rnd.randrange(24)
        prompt = history.get(conv, system) + tuple(rnd.randrange(50_000) for _ in range(rnd.randrange(50, 400)))
        reply = tuple(rnd.randrange(50_000) for _ in range(rnd.randrange(20, 300)))
        history[conv] = prompt + reply
        if len(history[conv]) > 12_000:
            del history[conv]
        out.append(TraceRequest(
            index=i, line=i + 1, request_id=f"conv{conv}-{i}", arrival_time=i * 0.25,
            prompt_token_ids=prompt, output_token_ids=reply, conversation_id=f"conv{conv}",
        ))
    return out


def _app_args():
    """What the CLI hands the inspector: a registry entry and its build options."""
    from engine.backends import BuildOptions, lookup
    from engine.settings import EngineSettings

    settings = EngineSettings(block_size=16, num_blocks=NUM_BLOCKS)
    return lookup("v1", "sequential"), BuildOptions(settings)


# -- children ------------------------------------------------------------------------------
def child_first_frame(launched_at: float) -> dict:
    from tui.app import InspectorApp

    class FirstFrame(InspectorApp):
        first: float | None = None

        def post_display_hook(self) -> None:
            if self.first is None:
                self.first = time.time()
                self.call_later(self.exit)

    app = FirstFrame(None, *_app_args(), requests=generated_trace(STEPS))
    app.run(headless=True, size=(160, 50))
    return {"first_frame_s": (app.first or time.time()) - launched_at}


def child_steps() -> dict:
    import asyncio

    from engine.replay.protocol import View
    from tui.app import InspectorApp
    from tui.screens.sequential import SequentialScreen

    class TimedScreen(SequentialScreen):
        shown_at = 0.0

        def show_view(self, rec) -> None:  # noqa: ANN001 - a StepRecord
            super().show_view(rec)
            self.shown_at = time.perf_counter()

    class Timed(InspectorApp):
        VIEWS = {View.SEQUENTIAL: TimedScreen}

        def __init__(self, *a, **kw) -> None:
            super().__init__(*a, **kw)
            self.frames: list[float] = []
            self.play_frames: list[float] = []

        def post_display_hook(self) -> None:
            now = time.perf_counter()
            self.frames.append(now)
            if self.main.playing:
                self.play_frames.append(now)

    async def wait_until(pilot, cond, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise RuntimeError("timed out")
            await pilot.pause(0.001)

    def at_step(app, i):
        return lambda: app.main.history.position == i and app.main.shown_step == i and app.main.header.step == i + 1

    async def run() -> dict:
        app = Timed(None, *_app_args(), requests=generated_trace())
        async with app.run_test(size=(160, 50)) as pilot:
            await wait_until(pilot, lambda: len(app.main.history) >= 500 and app.main.history.position == 0, 300)
            latencies = []
            for i in range(1, STEPS):
                start = time.perf_counter()
                await pilot.press("right")
                await wait_until(pilot, at_step(app, i), 60)
                shown = app.main.shown_at
                # The first frame drawn after the step was put into the widgets.
                await wait_until(pilot, lambda: app.frames and app.frames[-1] >= shown, 60)
                done = next(t for t in app.frames if t >= shown)
                latencies.append((done - start) * 1000)
            # Play at top speed on: the replay runs flat out behind the cursor, on the
            # other thread; measure the gaps between frames while playing.
            for _ in range(9):
                await pilot.press("plus")
            start_step = app.main.history.position
            app.play_frames.clear()
            await pilot.press("space")
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 3.0 and app.main.playing:
                await pilot.pause(0.01)
            await pilot.press("space")
            frames = app.play_frames
            gaps = [(b - a) * 1000 for a, b in zip(frames, frames[1:])]
            reached = app.main.history.position - start_step
        latencies.sort()
        gaps.sort()
        return {
            "steps": len(latencies),
            "p50_ms": latencies[len(latencies) // 2],
            "p95_ms": latencies[int(len(latencies) * 0.95)],
            "max_ms": latencies[-1],
            "play_gap_p95_ms": gaps[int(len(gaps) * 0.95)] if gaps else 0.0,
            "play_gap_max_ms": gaps[-1] if gaps else 0.0,
            "play_steps": reached,
            "play_seconds": (frames[-1] - frames[0]) if len(frames) > 1 else 0.0,
        }

    return asyncio.run(run())


def _run_child(kind: str) -> dict:
    cmd = [sys.executable, "-m", "bench.tui_bench", "--child", kind, "--launched-at", repr(time.time())]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", choices=("first-frame", "steps"))
    p.add_argument("--launched-at", type=float, default=0.0)
    args = p.parse_args(argv)
    if args.child == "first-frame":
        print(json.dumps(child_first_frame(args.launched_at)))
        return 0
    if args.child == "steps":
        print(json.dumps(child_steps()))
        return 0
    first = min(_run_child("first-frame")["first_frame_s"] for _ in range(3))
    steps = _run_child("steps")
    ok = lambda good: "ok" if good else "MISSED"  # noqa: E731
    print(f"== inspector on a {NUM_BLOCKS:,}-block pool (block 16), {steps['steps']} steps, 160x50")
    print(f"{'time to first frame':28}{first:>9.3f} s    goal <= {FIRST_FRAME_GOAL_S:.1f} s  "
          f"{ok(first <= FIRST_FRAME_GOAL_S)}  (best of 3 launches)")
    print(f"{'step latency p50':28}{steps['p50_ms']:>9.1f} ms")
    print(f"{'step latency p95':28}{steps['p95_ms']:>9.1f} ms   goal <= {STEP_P95_GOAL_MS:.0f} ms  "
          f"{ok(steps['p95_ms'] <= STEP_P95_GOAL_MS)}   (max {steps['max_ms']:.1f} ms)")
    print(f"{'top-speed play: frame gap':28}{steps['play_gap_p95_ms']:>9.1f} ms p95  "
          f"(max {steps['play_gap_max_ms']:.1f} ms; {steps['play_steps']} steps in "
          f"{steps['play_seconds']:.1f} s, the replay running alongside)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
