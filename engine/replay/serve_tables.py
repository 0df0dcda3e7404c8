"""Serve mode's block tables (detail only): every running sequence's table and block
states at one iteration, kept up to date from what the scheduler output says, and the
blocks whose slots may have changed. A mixin of ServeReplay (engine/replay/serve.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.model import BlockState, GroupTable, RequestResult, SeqView, TraceRequest
from engine.replay.common import cdiv, table_states

if TYPE_CHECKING:
    from engine.backends.vllm_v1.scheduler import Scheduled

# The KV cache group whose block tables a single-group layout has. Several groups
# (--hf-config) take _group_views: every group's table, read from vLLM each step.
GROUP = 0


@dataclass(slots=True)
class _Live:
    """One request vLLM knows, from arrival to finish."""

    req: TraceRequest
    out: tuple[int, ...]  # the tokens the model will sample, in order
    sampled: int = 0  # tokens handed to vLLM by the fake model runner
    delivered: int = 0  # tokens vLLM appended (EngineCoreOutput.new_token_ids)
    result: RequestResult | None = None  # at first admission
    hit_tokens: int = 0  # the latest prefix lookup (admission or resume)
    table: tuple[int, ...] = ()  # block table at the last record (detail only)
    # Several KV cache groups: each group's table at the last record (``table`` then holds
    # every group's real blocks, for the pool mirror).
    group_tables: tuple[tuple[int, ...], ...] = ()
    states: tuple[BlockState, ...] = ()
    frontier: int = 0  # tokens known and computed at the last record
    message: str = ""
    arrival: float = 0.0  # when it entered vLLM's waiting queue (the simulated clock)
    first_scheduled: float | None = None  # clock at the start of its first iteration
    first_token: float | None = None  # clock when vLLM handed out its first output token
    preemptions: int = 0
    evicted: int = 0  # cached blocks its allocations evicted (EvictionLedger)
    capped: str = ""  # why its output was capped at max_model_len, if it was
    loaded: frozenset[int] = frozenset()  # GPU blocks a CPU-tier load filled for it
    held_while_loading: bool = False  # admitted after an async load (it held blocks)
    gpu_hit_tokens: int | None = None  # vLLM's prefill_stats split, once reported
    cpu_hit_tokens: int | None = None


class SeqTables:
    """Mixed into ServeReplay: uses its attributes, as named there."""

    # -- block tables and the pool (detail) -----------------------------------------------------
    def _seq_views(self, scheduled: Scheduled | None, running: list[str], finished: list[str]):
        if len(self.backend.groups) > 1:
            return self._group_views(scheduled, running)
        b = self.backend
        bs = self.settings.block_size
        mirror = self._mirror
        touched: list[int] = []
        admissions = {a.seq_id: a for a in scheduled.admissions} if scheduled else {}
        # Hit states, in admission order: a hit on a block that another request holds, or
        # that a request scheduled earlier in this same schedule() took, is shared.
        claimed: set[int] = set()
        if scheduled is not None:
            for groups in scheduled.new_block_ids.values():
                for blocks in groups:
                    claimed.update(blocks)
                    touched.extend(blocks)
            # Waiting for a CPU-tier load: its whole table (prefix hit touched, load
            # targets allocated), though it is not running yet.
            for seq_id in scheduled.loading:
                touched.extend(b.block_tables(seq_id)[GROUP])
        hit_states: dict[str, list[BlockState]] = {}
        for a in admissions.values():
            states = []
            live = self._live[a.seq_id]
            loaded = live.loaded
            # An async load's request has held its GPU hit since the load began.
            own = 1 if live.held_while_loading else 0
            for bid in a.block_ids[GROUP][: a.num_cached_tokens // bs]:
                if bid in loaded:
                    states.append(BlockState.HIT_CPU)
                    continue
                shared = mirror.ref[bid] > own or bid in claimed
                states.append(BlockState.HIT_SHARED if shared else BlockState.HIT_FREE)
            hit_states[a.seq_id] = states
            for blocks in a.block_ids:
                claimed.update(blocks)
                touched.extend(blocks)
        running_set = set(running)
        # Blocks of requests that stopped running (finished, preempted) change; of those
        # still running only the tail past what was computed and cached can change.
        for seq_id in self._running_prev:
            live = self._live.get(seq_id)
            if live is None:
                continue
            if seq_id in running_set and seq_id not in admissions:
                touched.extend(live.table[self._stable_blocks(live.frontier):])
            else:
                touched.extend(live.table)
        views: list[SeqView] = []
        grown = scheduled.new_block_ids if scheduled is not None else {}
        for seq_id in running:
            live = self._live[seq_id]
            # The block table as the scheduler output tells the model runner: whole on
            # admission (new and resumed), else only the blocks added (asking vLLM for
            # the whole table every step costs O(blocks held) per sequence).
            adm = admissions.get(seq_id)
            if adm is not None:
                table = tuple(adm.block_ids[GROUP]) if adm.block_ids else ()
            elif seq_id in grown:
                table = live.table + tuple(grown[seq_id][GROUP])
            else:
                table = live.table
            if self.verify_pool:
                assert table == tuple(b.block_tables(seq_id)[GROUP]), f"block table of {seq_id}"
            num_tokens, computed = b.progress(seq_id)
            prompt_len = live.req.num_prompt_tokens
            prompt_blocks = cdiv(prompt_len, bs)
            if adm is not None:
                hits = hit_states[seq_id]
                held = 0
                touched.extend(table)
            else:
                hits = []
                held = len(live.table) if table[: len(live.table)] == live.table else 0
                touched.extend(table[self._stable_blocks(live.frontier):])
            recomputed = (
                adm is not None and not adm.resumed and live.result is not None
                and live.result.recomputed_last_block
            )
            last = prompt_blocks - 1 if recomputed else None
            live.table = table
            # Blocks held from the step before are HELD without asking: a long prompt
            # decoding for many steps would otherwise re-derive every state each step.
            live.states = table_states(table, hits=hits, held=held, computed=computed,
                                       block_size=bs, recomputed_index=last,
                                       key_before=mirror.key.__getitem__)
            live.frontier = min(num_tokens, computed)
            views.append(SeqView(
                seq_id=seq_id, request_id=live.req.request_id,
                tables=(GroupTable(GROUP, table, live.states),),
                num_prompt_tokens=prompt_len, num_tokens=num_tokens,
                num_hit_tokens=live.hit_tokens, num_prompt_blocks=prompt_blocks,
            ))
        return tuple(views), touched

    def _verify(self) -> None:
        """Tests (verify_pool): the pool mirror against a full scan of vLLM's pool."""
        scan = self.backend.scan_pool()
        mirrored = self._mirror.slots()
        if scan != mirrored:
            bad = [i for i, (a, c) in enumerate(zip(scan, mirrored)) if a != c]
            raise AssertionError(f"pool mirror out of date at blocks {bad[:10]}")

    def _stable_blocks(self, frontier: int) -> int:
        """Leading blocks of a running request that cannot change any more except by ref
        count (which other requests' tables cover): full of tokens that were known and
        computed at the last record, with two tokens and one block of margin for what the
        async scheduler hashes one iteration late."""
        return max(0, (frontier - 2) // self.settings.block_size - 1)


    def _group_views(self, scheduled: Scheduled | None, running: list[str]):
        """Several KV cache groups: every running sequence's table in every group, read
        from vLLM each step (a sliding-window group replaces blocks that left its window
        by vLLM's null block, so a table is not its last one plus the blocks added). Costs
        O(blocks held) per step; touched covers every block of every table before and
        after, so the pool mirror stays exact."""
        b = self.backend
        bs = self.settings.block_size
        null = b.null_block_id
        mirror = self._mirror
        touched: list[int] = []
        admissions = {a.seq_id: a for a in scheduled.admissions} if scheduled else {}
        claimed: set[int] = set()
        if scheduled is not None:
            for groups in scheduled.new_block_ids.values():
                for blocks in groups:
                    claimed.update(blocks)
                    touched.extend(blocks)
        hit_states: dict[str, list[list[BlockState]]] = {}
        for a in admissions.values():
            per_group = []
            for ids in a.block_ids:
                per_group.append([
                    BlockState.SKIPPED if bid == null else
                    BlockState.HIT_SHARED if mirror[bid].ref_cnt > 0 or bid in claimed
                    else BlockState.HIT_FREE
                    for bid in ids[: a.num_cached_tokens // bs]
                ])
            hit_states[a.seq_id] = per_group
            for blocks in a.block_ids:
                claimed.update(blocks)
                touched.extend(blocks)
        for seq_id in self._running_prev:
            live = self._live.get(seq_id)
            if live is not None:
                touched.extend(live.table)
        views: list[SeqView] = []
        for seq_id in running:
            live = self._live[seq_id]
            tables = b.block_tables(seq_id)
            num_tokens, computed = b.progress(seq_id)
            prompt_len = live.req.num_prompt_tokens
            prompt_blocks = cdiv(prompt_len, bs)
            adm = admissions.get(seq_id)
            out: list[GroupTable] = []
            for g, table in enumerate(tables):
                prev = live.group_tables[g] if g < len(live.group_tables) else ()
                if adm is not None:
                    hits, held = hit_states[seq_id][g], 0
                else:
                    hits, held = [], 0
                    while held < min(len(prev), len(table)) and (
                            table[held] == prev[held] or table[held] == null):
                        held += 1
                states = table_states(table, hits=hits, held=held, computed=computed,
                                      block_size=bs, recomputed_index=None,
                                      key_before=mirror.key.__getitem__, null_block=null)
                out.append(GroupTable(g, table, states))
            flat = tuple(bid for t in tables for bid in t if bid != null)
            touched.extend(flat)
            live.table, live.group_tables, live.states = flat, tables, out[0].states
            live.frontier = min(num_tokens, computed)
            views.append(SeqView(
                seq_id=seq_id, request_id=live.req.request_id, tables=tuple(out),
                num_prompt_tokens=prompt_len, num_tokens=num_tokens,
                num_hit_tokens=live.hit_tokens, num_prompt_blocks=prompt_blocks,
            ))
        return tuple(views), touched
