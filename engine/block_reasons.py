"""Why each missed prompt block missed and where each hit came from, as records carry them
(RequestResult.reasons; made by engine.replay.miss_reasons). Standard library only, Python
3.10 syntax, like engine.model."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple


class MissReason(str, Enum):
    """Why a prompt block was not a prefix-cache hit (engine.replay.miss_reasons)."""

    COLD = "cold"  # this prefix (its vLLM block hash) was never cached before
    EVICTED = "evicted"  # cached earlier, evicted since
    PARTIAL = "partial"  # the prompt's last block, not full: never cacheable
    LAST_TOKEN = "last_token"  # cached, recomputed: vLLM recomputes the last prompt token
    AFTER_MISS = "after_miss"  # cached, but an earlier block of the chain missed
    SALT = "salt"  # the same tokens were cached earlier under another cache_salt
    LORA = "lora"  # the same tokens were cached earlier under another LoRA adapter
    # Not in the GPU prefix cache, loaded from vLLM's CPU offloading tier instead (serve
    # mode with a tier only: vLLM's num_external_cached_tokens for the request).
    CPU_HIT = "cpu_hit"


class EvictedBy(NamedTuple):
    """Missed blocks whose last eviction was one step's allocation for one request."""

    step: int
    request_id: str  # the trace's id of the request the evicted blocks were handed to
    blocks: int


class HitSource(NamedTuple):
    """Hit blocks first computed (first stored in vLLM's cache) by one earlier request."""

    request_id: str  # "" when the block was cached before prefix-tui saw it stored
    same_conversation: bool  # that request is an earlier turn of this conversation
    blocks: int
    first_block: int  # the first and last of these blocks in this request's table
    last_block: int


@dataclass(frozen=True, slots=True)
class BlockReasons:
    """Why each missed prompt block missed (counts add up to prompt_blocks - hit_blocks)
    and where each hit block came from (blocks add up to hit_blocks).

    With a CPU tier, ``cpu_hit`` counts the blocks the GPU prefix cache missed and vLLM
    loaded from the tier: the counts then add up to prompt_blocks - the GPU's hit blocks,
    and those blocks are hits too (hit_blocks and hit_sources include them). ``cpu_hit``
    is None without a tier, and ``counts()`` leaves it out."""

    cold: int = 0
    evicted: int = 0
    partial: int = 0
    last_token: int = 0
    after_miss: int = 0
    salt: int = 0
    lora: int = 0
    cpu_hit: int | None = None
    evicted_by: tuple[EvictedBy, ...] = ()
    hit_sources: tuple[HitSource, ...] = ()

    @property
    def missed(self) -> int:
        return (self.cold + self.evicted + self.partial + self.last_token + self.after_miss
                + self.salt + self.lora + (self.cpu_hit or 0))

    def counts(self) -> dict[str, int]:
        """Missed blocks by reason, keyed by MissReason's values, in its order (cpu_hit
        only with a CPU tier)."""
        return {m.value: n for m in MissReason if (n := getattr(self, m.value)) is not None}
