"""The replica selector: with --instances N the inspector keeps each replica's own steps
apart and shows one replica at a time; ``r`` / ``R`` switch to the next / previous one.
A mixin of InspectorScreen (the cursor, the History and the panes live there).

The replay runs once (the router needs every replica) and its records come out in the
order the replicas made them, each numbered as its replica's own step and carrying its
replica's own totals (engine.replay.replicas, ``own_steps``). Each record goes to its
replica's History here, so a replica's pool is rebuilt from its own deltas, and switching
never replays: the other replica's History, with its own cursor, is simply shown.

Where the cursor lands on a switch: at the same point in trace time. The records' order
in the replay is trace time (sequential: the trace's request order; serve: the
coordinator always runs the replica whose simulated clock is earliest), so the new
replica shows its last step made at or before the step shown (its first step when it had
none yet). That point (the anchor) is kept while the user only switches, so switching
back lands on the very step it left.

Without --instances ``replica_set`` is None and every method here is the plain one-History
behaviour.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

from textual.binding import Binding

from engine import metrics
from engine.model import StepRecord
from engine.replay.history import History
from engine.replay.routing import idle_replicas_note
from tui.feed import Feed

REPLICA_KEYS = (
    Binding("r", "replica(1)", "Replica", key_display="r/R"),
    Binding("R", "replica(-1)", "Prev replica", show=False),
)


@dataclass
class ReplicaSteps:
    """One replica's own steps, as the inspector keeps them."""

    history: History
    series: list[float] = field(default_factory=list)  # the sparkline's value per step
    breakdowns: metrics.BreakdownSeries = field(default_factory=metrics.BreakdownSeries)
    positions: list[int] = field(default_factory=list)  # each step's place in the replay
    furthest: int = -1  # the furthest step shown (the requests table fills up to it)


class ReplicaSet:
    """Every replica's steps, and which one is shown."""

    def __init__(self, count: int, shown: int, history: History, new_history,  # noqa: ANN001
                 router: str) -> None:
        self.router = router  # the --router name (the note on replicas that got nothing)
        self.steps = [ReplicaSteps(history if k == shown else new_history())
                      for k in range(count)]
        self.shown = shown
        self.taken = 0  # records of the replay handed out so far
        self.anchor: int | None = None  # the place in the replay a switch keeps
        self.anchor_at: tuple[int, int] = (-1, -1)  # (replica, step) the last switch went to
        self.pending: int | None = None  # r / R pressed before another replica had a step

    def others_have_steps(self) -> bool:
        return any(s.history.records for k, s in enumerate(self.steps) if k != self.shown)

    def __len__(self) -> int:
        return len(self.steps)

    def step_at(self, k: int, place: int) -> int:
        """Replica k's last step made at or before ``place`` in the replay (0: none)."""
        return max(0, bisect_right(self.steps[k].positions, place) - 1)

    def demand(self, k: int, index: int) -> int:
        """Records of the replay needed for replica k's step ``index`` and the run-ahead
        beyond it. Steps not made yet: at least one more record per replica per step, so
        the demand always grows (it is asked again as records come)."""
        positions = self.steps[k].positions
        if index < len(positions):
            return positions[index] + 1 + Feed.RUN_AHEAD
        return self.taken + (index - len(positions) + 1) * len(self.steps) + Feed.RUN_AHEAD


class ReplicaSwitch:
    """Mixed into InspectorScreen: uses its attributes, as named there."""

    replica_set: ReplicaSet | None = None

    def setup_replicas(self, options) -> None:  # noqa: ANN001 - BuildOptions
        if options.instances is not None and options.replica is not None:
            self.replica_set = ReplicaSet(options.instances, options.replica, self.history,
                                          lambda: History(self.history.num_blocks,
                                                          self.history.checkpoint_every),
                                          options.router)

    # -- records from the feed ---------------------------------------------------------------
    def take_records(self, count: int) -> list[StepRecord]:
        """Copy the replay's records up to ``count`` into the History (with replicas, each
        into its replica's); returns the new records of the History shown."""
        rs = self.replica_set
        if rs is None:
            new = self.feed.records[len(self.history) : count]
            for rec in new:
                self.history.append(rec)
                self.series.append(self.series_point(rec))
                self.breakdowns.append(rec.rows)
            return new
        out = []
        for place in range(rs.taken, count):
            rec = self.feed.records[place]
            steps = rs.steps[rec.replica]
            steps.history.append(rec)
            steps.series.append(self.series_point(rec))
            steps.breakdowns.append(rec.rows)
            steps.positions.append(place)
            if rec.replica == rs.shown:
                out.append(rec)
        rs.taken = max(rs.taken, count)
        if self.target is not None and self.target >= len(self.history):
            self.want_step(self.target)  # other replicas' records came first: ask on
        if rs.pending is not None:  # after the caller has shown these records
            self.call_later(self.switch_when_ready)
        return out

    def want_step(self, index: int) -> None:
        """Make sure the shown History's step ``index`` gets made, and the run-ahead."""
        rs = self.replica_set
        self.feed.want(index + 1 + Feed.RUN_AHEAD if rs is None else rs.demand(rs.shown, index))

    def replica_text(self) -> str:
        rs = self.replica_set
        return "" if rs is None else f"replica {rs.shown} of {len(rs)}"

    # -- switching -------------------------------------------------------------------------------
    def action_replica(self, delta: int) -> None:
        rs = self.replica_set
        if rs is None:  # check_action hides the key then; kept for a direct call
            return
        n = len(rs)
        for step in range(1, n):  # the next replica that has steps
            k = (rs.shown + delta * step) % n
            if rs.steps[k].history.records:
                self.show_replica(k)
                return
        # The replay runs only as far as the steps shown ask: replay on until another
        # replica gets a request, or the trace ends (then say which got none, and why).
        rs.pending = delta
        self.switch_when_ready()

    def switch_when_ready(self) -> None:
        rs = self.replica_set
        if rs is None or rs.pending is None:  # a later call already switched
            return
        if rs.others_have_steps():
            delta, rs.pending = rs.pending, None
            self.action_replica(delta)
        elif self.feed.replay_done and rs.taken >= len(self.feed.records):
            rs.pending = None
            note = idle_replicas_note([len(s.history.records) for s in rs.steps], rs.router)
            self.notify(note or "no other replica has steps", timeout=8)
        else:
            self.feed.want(rs.taken + len(rs) * Feed.RUN_AHEAD)

    def show_replica(self, k: int) -> None:
        """Show replica k at the same point in trace time (see the module's note)."""
        rs = self.replica_set
        assert rs is not None
        new = rs.steps[k]
        if not new.history.records:
            self.notify(f"replica {k} has no steps yet", timeout=2)
            return
        old = rs.steps[rs.shown]
        pos = self.history.position
        if rs.anchor is None or rs.anchor_at != (rs.shown, pos):
            rs.anchor = old.positions[pos] if pos >= 0 else -1  # the user moved: a new anchor
        old.furthest = self._furthest
        rs.shown = k
        self.history, self.series, self.breakdowns = new.history, new.series, new.breakdowns
        self._furthest = new.furthest
        self.target = self.asked_step = None
        self.cancel_waits()
        self._shown = (-1, frozenset())  # another pool: the pool map redraws every row
        index = rs.step_at(k, rs.anchor)
        rs.anchor_at = (k, index)
        self.replica_shown()
        self.show_replica_titles()
        self._seek(index)

    def show_replica_titles(self) -> None:
        rs = self.replica_set
        if rs is None:
            return
        text = self.replica_text()
        self.header.update_state(replica=text, total=len(self.history),
                                 total_final=self.feed.replay_done)
        self.totals.border_title = f"totals · {text} (this replica only)"
        self.pool_map.border_title = f"block pool · {text} ({self.settings.num_blocks:,} blocks)"

    def find_step(self, match) -> tuple[int | None, int] | None:  # noqa: ANN001
        """The first step that ``match(record)`` accepts: in the History shown, else (with
        replicas) in another replica's, as (replica or None, step)."""
        for rec in self.history.records:
            if match(rec):
                return None, rec.index
        rs = self.replica_set
        for k, steps in enumerate(rs.steps if rs is not None else ()):
            for rec in steps.history.records if k != rs.shown else ():
                if match(rec):
                    return k, rec.index
        return None

    def goto_found(self, found: tuple[int | None, int]) -> None:
        """Go to a step find_step found, switching replicas when it is another's."""
        k, index = found
        if k is not None and self.replica_set is not None and k != self.replica_set.shown:
            self.show_replica(k)
            self.notify(f"on {self.replica_text()}", timeout=2)
        self.goto(index)

    def replica_shown(self) -> None:
        """The view's own per-replica state after a switch (a requests table, an index)."""
