"""The inspector app: a thin App that opens the Screen of the backend's view.

Each view is a Screen (tui/screens/): sequential (one request per step) and serve (one
vLLM scheduler iteration per step) share the cursor, the pool map, totals, block
inspector, free queue and KV events (tui/screens/inspector.py) and add their own block
tables, middle pane and keys. Which one opens is the registry entry's ``view``; a new
view is one more Screen and one more line in VIEWS.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from textual.app import App

from engine.backends import BackendEntry, BuildOptions
from engine.model import TraceRequest
from engine.replay.protocol import View
from engine.trace.reader import TraceSource
from tui.screens.inspector import InspectorScreen
from tui.screens.sequential import SequentialScreen
from tui.screens.serve import ServeScreen



class InspectorApp(App[int]):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    ENABLE_COMMAND_PALETTE = False  # every action has a key; the footer needs the room
    TITLE = "prefix-tui"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (140, "-wide")]  # wide: a 64-column side
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]  # tall narrow: taller side pane
    VIEWS: ClassVar[dict[View, type[InspectorScreen]]] = {
        View.SEQUENTIAL: SequentialScreen,
        View.SERVE: ServeScreen,
    }

    def __init__(
        self,
        source: TraceSource | None,
        entry: BackendEntry,
        options: BuildOptions,
        *,
        requests: Iterable[TraceRequest] | None = None,
    ) -> None:
        """``source``: the trace file, or None with ``requests`` given directly."""
        super().__init__()
        self.main = self.make_main(source, entry, options, requests)

    def make_main(self, source: TraceSource | None, entry: BackendEntry, options: BuildOptions,
                  requests: Iterable[TraceRequest] | None) -> InspectorScreen:
        """The view's screen (a lesson app makes its lesson screen here)."""
        return self.VIEWS[entry.view](source, entry, options, requests=requests)

    def get_default_screen(self) -> InspectorScreen:
        # The view's screen is the base of the stack: help, prompts and errors go above it.
        return self.main
