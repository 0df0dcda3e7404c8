"""What every block state looks like and means, in one place.

Each state has a glyph (a letter where it can) so the screen reads with NO_COLOR, in a
screenshot or in a grey-scale projector; colours live in app.tcss as component classes
named here (``bs-H`` ...), drawn from the Okabe-Ito palette so they stay apart for
colour-blind readers.
"""

from __future__ import annotations

from rich.style import Style

from engine.model import BlockState, SlotStatus

# -- a logical block of the current request (block table, and its cells in the pool map) --
_CLASS_WORD = {BlockState.HELD: "held", BlockState.SKIPPED: "skipped"}
STATE_CLASS = {s: f"bs-{_CLASS_WORD.get(s, s.letter)}" for s in BlockState}

STATE_LABEL = {
    BlockState.HIT_FREE: "hit, cached-free",
    BlockState.HIT_SHARED: "hit, shared",
    BlockState.NEW: "new",
    BlockState.NEW_EVICTED: "new, evicted",
    BlockState.PARTIAL: "partial",
    BlockState.RECOMPUTED: "recomputed",
    BlockState.HELD: "held",
    BlockState.SKIPPED: "null block (outside the window)",
    BlockState.HIT_CPU: "loaded from CPU",
}

STATE_HELP = {
    BlockState.HIT_FREE: (
        "Prefix-cache hit on a block that sat in the free queue with its hash: no sequence "
        "held it, but its KV values were still there, so vLLM took it back instead of "
        "computing those tokens again."
    ),
    BlockState.HIT_SHARED: (
        "Prefix-cache hit on a block another running sequence holds: both point at the same "
        "physical block and its ref count goes up."
    ),
    BlockState.NEW: (
        "Newly allocated from a block with no cached content: these tokens are computed."
    ),
    BlockState.NEW_EVICTED: (
        "Newly allocated, and the block handed out still held another prefix's cached KV: "
        "vLLM evicted that cached block (dropped its hash) to make room."
    ),
    BlockState.PARTIAL: (
        "The last block is not full. vLLM hashes and caches only full blocks, so a partial "
        "block can never be a hit."
    ),
    BlockState.RECOMPUTED: (
        "This block is in the cache, yet vLLM computes it again: it caps a hit at "
        "prompt length - 1 tokens because the model must run on at least the last prompt "
        "token to produce logits for the first output token. When the prompt ends exactly on "
        "a block boundary, that whole last block is recomputed."
    ),
    BlockState.HELD: "Allocated at an earlier step and still held by this sequence.",
    BlockState.SKIPPED: (
        "A sliding-window (or chunked local attention) group needs no KV here: these tokens "
        "are outside its window, so vLLM's lookup and remove_skipped_blocks put its null "
        "block in this place of the group's block table instead of a real block."
    ),
    BlockState.HIT_CPU: (
        "Serve mode with vLLM's CPU offloading tier: the prefix had left the GPU cache, "
        "vLLM found it in the CPU tier and loaded it back into this newly allocated block "
        "instead of computing it again."
    ),
}

# -- a physical block of the pool ----------------------------------------------------------
POOL_NULL, POOL_FREE, POOL_CACHED, POOL_USED, POOL_USED_MANY, POOL_EVICTED = (
    "pool-null", "pool-free", "pool-cached", "pool-used", "pool-used-many", "pool-evicted",
)
POOL_GLYPH = {POOL_NULL: "x", POOL_FREE: "·", POOL_CACHED: "c", POOL_EVICTED: "!"}

POOL_LABEL = {
    POOL_NULL: "null block",
    POOL_FREE: "free",
    POOL_CACHED: "cached-free",
    POOL_USED: "in use (digit: ref count)",
    POOL_EVICTED: "evicted",
}

POOL_HELP = {
    POOL_NULL: "Block 0 is vLLM's null block: a placeholder it never hands out.",
    POOL_FREE: "In the free queue with no cached content.",
    POOL_CACHED: (
        "Cached-free (evictor-resident): no sequence holds it, but it keeps its hash and KV "
        "values. In vLLM V1 a freed block goes back to the free queue with its hash; it is "
        "evicted lazily, only when the queue hands it out for a new allocation, and until "
        "then any request with the same prefix can take it back as a hit."
    ),
    POOL_USED: "Held by a running sequence; the digit is its ref count (+ for 10 or more).",
    POOL_EVICTED: "Lost its cached hash at this step (evicted to make room).",
}

# -- serve mode: a block a sequence held before this step that another live sequence holds
# too (ref count > 1). Its recorded state is HELD ("="); it is drawn "s" on the shared colour.
HELD_SHARED = "bs-held-shared"
HELD_SHARED_GLYPH = "s"
HELD_SHARED_LABEL = "held, shared"
HELD_SHARED_HELP = (
    "Serve mode: held since an earlier step, and another running sequence holds the same "
    "physical block (its ref count is above 1). At the step a sequence takes such a block "
    "as a prefix hit it shows S."
)

SELECTED = "selected"
MARKED = "marked"  # cells a lesson step points at (tui/screens/lesson.py)
LABEL = "label"

COMPONENT_CLASSES = frozenset(
    {*STATE_CLASS.values(), *POOL_GLYPH.keys(), POOL_USED, POOL_USED_MANY, SELECTED, MARKED,
     LABEL, HELD_SHARED}
)


def pool_class(status: SlotStatus, ref_cnt: int) -> str:
    if status is SlotStatus.IN_USE:
        return POOL_USED_MANY if ref_cnt > 1 else POOL_USED
    return {
        SlotStatus.NULL: POOL_NULL,
        SlotStatus.FREE: POOL_FREE,
        SlotStatus.CACHED_FREE: POOL_CACHED,
    }[status]


def pool_glyph(cls: str, ref_cnt: int) -> str:
    if cls in (POOL_USED, POOL_USED_MANY):
        return str(ref_cnt) if ref_cnt < 10 else "+"
    return POOL_GLYPH[cls]


class Palette:
    """Rich styles of the component classes, looked up once per widget and style change."""

    def __init__(self, widget) -> None:  # noqa: ANN001 - any Widget declaring the classes
        self._widget = widget
        self._styles: dict[str, Style] = {}

    def clear(self) -> None:
        self._styles.clear()

    def __getitem__(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._widget.get_component_rich_style(name)
            self._styles[name] = style
        return style
