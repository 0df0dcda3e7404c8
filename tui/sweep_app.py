"""`prefix-tui sweep TRACE --tui`: the sweep screen in a thin App of its own."""

from __future__ import annotations

from textual.app import App

from engine.sweep.executors import ExecutorChoice, run_points
from engine.sweep.plan import SweepPlan
from tui.screens.sweep import Runner, SweepScreen


class SweepApp(App[int]):
    ENABLE_COMMAND_PALETTE = False
    TITLE = "prefix-tui sweep"

    def __init__(self, plan: SweepPlan, choice: ExecutorChoice,
                 runner: Runner = run_points) -> None:
        super().__init__()
        self.main = SweepScreen(plan, choice, runner)

    def get_default_screen(self) -> SweepScreen:
        return self.main
