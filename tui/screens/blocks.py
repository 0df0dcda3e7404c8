"""Block selection: pick a block (click, [ / ], b), highlight it in the pool map and the
block tables, and scan the records for its story on a worker thread. A mixin of
InspectorScreen."""

from __future__ import annotations

from textual import work
from textual.worker import get_current_worker

from engine.model import KVGroupInfo
from tui.messages import BlockClicked, BlockReport
from tui.widgets.block_inspector import scan_block
from tui.widgets.modals import PromptScreen


class BlockSelection:
    """Mixed into InspectorScreen: uses its attributes, as named there."""

    # vLLM's KV cache groups, set when the engine is up (several with --hf-config).
    kv_groups: tuple[KVGroupInfo, ...] = ()

    def action_pick_block(self) -> None:
        def done(value: str | None) -> None:
            if value:
                try:
                    self.action_select_block(int(value))
                except ValueError:
                    self.notify(f"not a block id: {value!r}", severity="warning", markup=False)

        self.app.push_screen(PromptScreen(f"Block id (0–{self.settings.num_blocks - 1:,}):", "block id"), done)

    def action_select_block(self, block_id: int) -> None:
        if not 0 <= block_id < self.settings.num_blocks:
            self.notify(f"no block {block_id} in this pool", severity="warning")
            return
        self.selected_block = block_id
        self.pool_map.select(block_id)
        self.block_tables().select(block_id)
        if self.has_class("-narrow"):
            self.tabs.active = "tab-inspector"
        self._inspect(block_id)

    def action_clear_block(self) -> None:
        self.selected_block = None
        self.pool_map.select(None)
        self.block_tables().select(None)
        self.inspector.clear()

    def action_walk_block(self, delta: int) -> None:
        table = self.block_tables()
        ids = table.block_ids
        if not ids:
            return
        pos = table.position_of(self.selected_block) if self.selected_block is not None else None
        pos = (0 if delta > 0 else len(ids) - 1) if pos is None else (pos + delta) % len(ids)
        self.action_select_block(ids[pos])

    def _inspect(self, block_id: int) -> None:
        upto = self.history.position
        if upto < 0:
            return
        self.inspector.show_pending(block_id, upto)
        self._scan_block(block_id, upto, self.history.slot(block_id), self.feed.text_trace)

    @work(thread=True, exclusive=True, exit_on_error=False, group="inspect", name="scan block")
    def _scan_block(self, block_id: int, upto: int, slot, text_trace: bool) -> None:
        worker = get_current_worker()
        decode = None
        if text_trace:
            from engine.trace.tokenize import load_tokenizer

            try:
                decode = load_tokenizer(self.tokenizer_name).decode
            except Exception:  # a tokenizer that cannot load only costs the decoded text
                decode = None
        report = scan_block(
            self.history.records, upto, block_id, slot, self.settings.block_size,
            decode=decode, cancelled=lambda: worker.is_cancelled, request_of=self.holder_request(),
            null_block_id=self.entry.null_block_id,
        )
        if not report.cancelled:
            self.post_message(BlockReport(report))

    def on_block_report(self, msg: BlockReport) -> None:
        if msg.report.block_id == self.selected_block:
            self.inspector.show(msg.report)

    def on_block_clicked(self, msg: BlockClicked) -> None:
        self.action_select_block(msg.block_id)
