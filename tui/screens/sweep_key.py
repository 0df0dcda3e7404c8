"""``c`` in the inspector: the sweep screen for the trace shown, at pool sizes around the
one shown (engine.sweep.around), run in the background; ``q`` there comes back here with
the inspector where it was. A mixin of InspectorScreen.

Planning reads the whole trace once (it counts the requests), so it runs in a thread
worker; the points then run in their own processes, as ``prefix-tui sweep`` runs them.
"""

from __future__ import annotations

from textual import work

from engine.errors import UserError


class SweepKey:
    """Mixed into InspectorScreen: uses its attributes, as named there."""

    def action_sweep(self) -> None:
        if self.source is None:
            self.notify("a capacity sweep runs the trace from its file; these requests "
                        "were given directly", timeout=4)
            return
        self.notify("planning a capacity sweep of this trace…", timeout=2)
        self.plan_sweep()

    @work(thread=True, exclusive=True, group="sweep-plan")
    def plan_sweep(self) -> None:
        from engine.sweep.around import plan_around
        from engine.sweep.executors import ExecutorChoice, default_jobs
        from tui.screens.sweep import SweepScreen

        try:
            plan = plan_around(self.entry, self.options, self.source)
        except (UserError, OSError) as err:  # a TraceError is a UserError
            self.app.call_from_thread(self.notify, f"no sweep: {err}".splitlines()[0],
                                      severity="warning", markup=False, timeout=6)
            return
        screen = SweepScreen(plan, ExecutorChoice("local", jobs=default_jobs()))
        self.app.call_from_thread(self.app.push_screen, screen)
