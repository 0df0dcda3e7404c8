"""Where a block's content lives when vLLM's CPU offloading tier is on: this GPU block,
the CPU tier, both, or neither.

Read from the records up to the cursor, never guessed: the block's hash (its own, or the
last one it held before an eviction) comes from the pool deltas, and the CPU tier's
content from vLLM's KV events with ``medium="CPU"`` (BlockStored adds a hash,
BlockRemoved drops it: the tier's own evictions). For the GPU a block's ref count and
hash say whether it is in use or cached-free; a hash evicted from this block may still
sit in another GPU block (vLLM's GPU BlockStored / BlockRemoved events count them)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

from engine.model import EventKind, Slot, StepRecord


class HashHome(NamedTuple):
    block_hash: bytes
    current: bool  # the block holds this hash now (False: its last one, since evicted)
    evicted_at: int | None  # the 0-based step it left this block (not current)
    gpu_blocks: int  # GPU blocks holding it at the cursor (vLLM's GPU events)
    in_cpu: bool  # the CPU tier holds it at the cursor (vLLM's CPU events)


def hash_home(records: Sequence[StepRecord], upto: int, block_id: int,
              slot: Slot) -> HashHome | None:
    """Where the block's hash lives at step ``upto`` (None: no tier, or the block never
    held a hash)."""
    last = min(upto, len(records) - 1)
    if last < 0 or records[last].tier is None:
        return None
    cpu: Counter[bytes] = Counter()
    gpu: Counter[bytes] = Counter()
    held: bytes | None = None  # the last hash this block held
    evicted_at: int | None = None
    stored, removed, cleared = EventKind.STORED, EventKind.REMOVED, EventKind.CLEARED
    for i in range(last + 1):
        rec = records[i]
        d = rec.pool_delta
        if block_id in d.block_ids:
            h = d.hash_after[d.block_ids.index(block_id)]
            if h is not None:
                held = h
        if block_id in rec.evicted.column("block_id"):
            evicted_at = i
        for e in rec.events:
            into = cpu if e.medium == "CPU" else gpu
            if e.kind is stored:
                into.update(e.block_hashes)
            elif e.kind is removed:
                into.subtract(e.block_hashes)
            elif e.kind is cleared:
                into.clear()
    own = slot.block_hash
    h = own if own is not None else held
    if h is None:
        return None
    return HashHome(h, own is not None, None if own is not None else evicted_at,
                    max(0, gpu[h]), cpu[h] > 0)


def home_line(home: HashHome, in_use: bool) -> str:
    """"GPU (cached-free) and CPU tier", "CPU tier only (evicted from the GPU at step 5)"."""
    where: list[str] = []
    if home.current:
        where.append("GPU (in use)" if in_use else "GPU (cached-free)")
    elif home.gpu_blocks:
        where.append(f"GPU (another block{'s' * (home.gpu_blocks != 1)})")
    if home.in_cpu:
        where.append("CPU tier")
    text = " and ".join(where) if where else "neither tier (recomputed if needed again)"
    if len(where) == 1 and home.in_cpu:
        text = "CPU tier only"
    if not home.current:
        gone = f" at step {home.evicted_at + 1}" if home.evicted_at is not None else ""
        text = f"its last hash {home.block_hash.hex()[:8]}, evicted from this block{gone}: {text}"
    return text
