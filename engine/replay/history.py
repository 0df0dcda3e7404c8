"""A cursor over step records: the pool as of any step, rebuilt from deltas.

Going back never re-runs vLLM: each record carries (block, slot before, slot after)
for the blocks it changed, so the cursor undoes or redoes them. Checkpoints of the whole
pool every ``checkpoint_every`` steps keep a far seek from replaying every delta.
"""

from __future__ import annotations

from engine.model import FREE_SLOT, Slot, StepRecord


class History:
    def __init__(self, num_blocks: int, checkpoint_every: int = 512) -> None:
        self.records: list[StepRecord] = []
        self.num_blocks = num_blocks
        self._pool: list[Slot] = [FREE_SLOT] * num_blocks
        self._position = -1  # the pool shows the end of this step (-1: before any step)
        self._every = checkpoint_every
        self._checkpoints: dict[int, list[Slot]] = {}  # step -> pool at the end of it
        self._max_applied = -1

    # -- producer side -----------------------------------------------------------------
    def append(self, record: StepRecord) -> None:
        self.records.append(record)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def checkpoint_every(self) -> int:
        return self._every

    # -- cursor --------------------------------------------------------------------------
    @property
    def position(self) -> int:
        return self._position

    @property
    def current(self) -> StepRecord | None:
        return self.records[self._position] if self._position >= 0 else None

    def forward(self) -> bool:
        if self._position + 1 >= len(self.records):
            return False
        self._position += 1
        delta = self.records[self._position].pool_delta
        # map over __setitem__: in C, thousands of blocks a step on a long replay.
        list(map(self._pool.__setitem__, delta.block_ids, delta.after_slots()))
        if self._position > self._max_applied:
            self._max_applied = self._position
            if self._every and self._position % self._every == 0:
                self._checkpoints[self._position] = list(self._pool)
        return True

    def back(self) -> bool:
        if self._position < 0:
            return False
        delta = self.records[self._position].pool_delta
        # Each block appears once in a delta, so the order of undoing does not matter.
        list(map(self._pool.__setitem__, delta.block_ids, delta.before_slots()))
        self._position -= 1
        return True

    def seek(self, index: int) -> bool:
        """Move to step ``index`` (clamped to what has been recorded); False if unchanged."""
        index = max(-1, min(index, len(self.records) - 1))
        if index == self._position:
            return False
        start = self._nearest_checkpoint(index)
        if start is not None and abs(index - start) < abs(index - self._position):
            self._pool = list(self._checkpoints[start])
            self._position = start
        while self._position < index:
            self.forward()
        while self._position > index:
            self.back()
        return True

    def _nearest_checkpoint(self, index: int) -> int | None:
        best = None
        for step in self._checkpoints:
            if best is None or abs(step - index) < abs(best - index):
                best = step
        return best

    # -- reading the pool at the cursor ---------------------------------------------------
    def slot(self, block_id: int) -> Slot:
        return self._pool[block_id]

    @property
    def pool(self) -> list[Slot]:
        """The pool at the cursor; read-only by convention (the cursor owns it)."""
        return self._pool
