"""Pictures for slides: the inspector's screen as SVG (``s`` in the app, or headless with
``--screenshot-at STEP -o FILE.svg``), and the flags for them and for ``--plot``
(tui/plot.py) and ``--web`` (tui/web.py)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from engine.errors import UserError
from engine.export import check_writable
from tui.files import write_file, write_unique

SCREEN_SIZE = (160, 50)  # columns, rows of a headless screenshot: every pane on screen


def add_picture_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pictures and the classroom view")
    g.add_argument("--plot", metavar="FILE.png|svg",
                   help="headless: draw vLLM's hit rate over the replay, per request and "
                        "cumulative (needs matplotlib: pip install 'prefix-tui[plot]')")
    g.add_argument("--screenshot-at", type=int, metavar="STEP",
                   help="no screen: open the inspector at STEP, save it as an SVG (-o) and exit")
    g.add_argument("-o", "--output", metavar="FILE.svg", help="--screenshot-at: the SVG file")
    g.add_argument("--size", default=f"{SCREEN_SIZE[0]}x{SCREEN_SIZE[1]}", metavar="COLSxROWS",
                   help=f"--screenshot-at: the screen's size (default "
                        f"{SCREEN_SIZE[0]}x{SCREEN_SIZE[1]})")
    add_web_arguments(g)


def add_web_arguments(g: argparse._ActionsContainer) -> None:  # noqa: SLF001 - argparse's own type
    g.add_argument("--web", action="store_true",
                   help="serve the inspector to a browser (textual-serve) instead of the terminal")
    g.add_argument("--port", type=int, default=8000, help="--web: the port (default 8000)")
    g.add_argument("--host", default="localhost",
                   help="--web: the address to listen on (default localhost: this machine only)")


def check_picture_args(args: argparse.Namespace) -> None:
    """Flags that do not go together, before anything slow."""
    if args.plot and not args.headless:
        raise UserError("--plot goes with --headless")
    if args.screenshot_at is not None:
        if args.headless or args.web:
            raise UserError("--screenshot-at opens the inspector without a screen; "
                            "not with --headless or --web")
        if not args.output:
            raise UserError("--screenshot-at needs -o FILE.svg")
        if Path(args.output).suffix.lower() != ".svg":
            raise UserError(f"-o {args.output}: a screenshot is an SVG; the name must end in .svg")
        if args.screenshot_at < 1:
            raise UserError(f"--screenshot-at {args.screenshot_at}: steps start at 1")
        parse_size(args.size)
    elif args.output:
        raise UserError("-o goes with --screenshot-at (--json and --plot name their own files)")
    if args.web and args.headless:
        raise UserError("--web serves the inspector; not with --headless")


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text.strip())
    if not m or not (40 <= int(m.group(1)) <= 500 and 12 <= int(m.group(2)) <= 300):
        raise UserError(f"--size {text}: COLSxROWS, e.g. 160x50 (40..500 x 12..300)")
    return int(m.group(1)), int(m.group(2))


def screenshot_stem(trace_name: str, step: int) -> str:
    """``prefix-tui-<trace>-step<N>``, with only safe file-name characters."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(trace_name).stem)[:60] or "trace"
    return f"prefix-tui-{stem}-step{step}"


def save_screen(svg: str, trace_name: str, step: int, directory: str | Path = ".") -> Path:
    """The inspector's ``s``: a new file in ``directory``, never over an existing one."""
    return write_unique(directory, screenshot_stem(trace_name, step), ".svg", svg)


def run_screenshot(args: argparse.Namespace) -> int:
    """``prefix-tui TRACE --screenshot-at STEP -o FILE.svg``: the inspector without a
    terminal, moved to STEP; once the screen shows it with nothing loading, its SVG."""
    from engine.options import backend_from_args, trace_source_from_args
    from tui.app import InspectorApp

    entry, options = backend_from_args(args)
    check_writable(args.output, args.force, inputs=(args.trace,))
    source = trace_source_from_args(args)
    source.reader()  # a missing or empty trace: one line, before vLLM loads
    app = InspectorApp(source, entry, options)
    svg = shoot(app, args.screenshot_at - 1, parse_size(args.size))
    write_file(args.output, lambda tmp: tmp.write_text(svg, encoding="utf-8"), args.force)
    print(f"wrote {args.output} (step {args.screenshot_at:,})")
    return 0


def shoot(app, index: int, size: tuple[int, int]) -> str:  # noqa: ANN001 - an InspectorApp
    """Run ``app`` headless, go to step ``index`` and return the screen as SVG."""
    result: dict[str, object] = {}

    async def pilot_body(pilot) -> None:  # noqa: ANN001 - textual's Pilot
        screen = app.main
        while screen.history.position < 0 and not _stopped(screen):
            await pilot.pause(0.05)
        if not _stopped(screen):
            screen.goto(index)
        while not (screen.settled_at(index) or _stopped(screen)
                   or (screen.feed.replay_done and len(screen.history) <= index)):
            await pilot.pause(0.05)
        await pilot.pause()
        if screen.settled_at(index):
            result["svg"] = app.export_screenshot(title=f"prefix-tui · step {index + 1}")
        else:
            result["error"] = _why_not(screen, index)
        app.exit()

    app.run(headless=True, size=size, auto_pilot=pilot_body)
    if "svg" not in result:
        raise UserError(str(result.get("error", "the inspector stopped before the step")))
    return str(result["svg"])


def _stopped(screen) -> bool:  # noqa: ANN001 - an InspectorScreen
    return screen.engine_status in ("failed", "stopped")


def _why_not(screen, index: int) -> str:  # noqa: ANN001 - an InspectorScreen
    if screen.engine_status == "failed" and screen.engine_error:
        return f"vLLM could not start: {screen.engine_error[0]}"
    if screen.trace_error:
        return f"trace error: {screen.trace_error}"
    return (f"--screenshot-at {index + 1}: there is no such step; the replay has "
            f"{len(screen.history):,} steps")
