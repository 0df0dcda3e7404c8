"""The help screen's text: prefix caching in a few paragraphs, each state in a sentence,
and the keys. Written for a room: someone new to vLLM should follow it."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget

from engine.model import BlockState
from tui.widgets import palette

INTRO = (
    "vLLM stores a model's attention keys and values (the KV cache) in fixed-size blocks "
    "of tokens. With prefix caching on, every full block gets a hash of its tokens and of "
    "all tokens before it, so two requests that start with the same text (a system "
    "prompt, the earlier turns of a chat) map their first blocks to the same hash. A new "
    "request looks its blocks up by hash, reuses the ones found, and computes only the "
    "rest. This tool replays a trace through vLLM's real KVCacheManager, one request per "
    "step, and shows what happened to every block."
)

FREE_QUEUE = (
    "Cached-free, or evictor-resident: when a request finishes, vLLM V1 puts its blocks "
    "back on the free queue but keeps their hashes and contents. Nothing is evicted then. "
    "A cached-free block is evicted lazily, only when the free queue hands it out for a "
    "new allocation; until then a request with the same prefix can take it back as a hit. "
    "The free-queue pane lists the blocks in the order vLLM will hand them out."
)

LAST_BLOCK = (
    "Why the last block is recomputed: the model has to run on at least the last prompt "
    "token to produce the logits of the first output token, so vLLM caps a hit at "
    "prompt length - 1 tokens. Hits count only whole blocks, so when a prompt ends exactly "
    "on a block boundary and is fully cached, its whole last block (R) is computed again."
)

NUMBERS = (
    "Sharing fraction = blocks reused / prompt blocks over all served requests (and its "
    "average per request). vLLM hit rate = hit tokens / queried tokens from vLLM's own "
    "PrefixCacheStats, cumulative and over its window of the last 1,000 requests."
)

KEYS = (
    ("→ / n, ← / p", "next / previous step (going back never re-runs vLLM)"),
    ("space, + / -", "play / pause, faster / slower"),
    ("g, Home, End", "go to a step, the first, the last"),
    ("/", "find a request id"),
    ("[ / ], b", "select the previous / next block of this request, or a block id"),
    ("Esc", "clear the block selection"),
    ("click", "a block (pool map, block table, free queue) or a row to jump there"),
    ("Tab, t", "move between panes; on a narrow terminal t switches the side pane"),
    ("e", "the error or did-not-fit details of this step"),
    ("r / R", "with --instances N: the next / previous replica, at the same point in "
              "trace time (its own steps, pool, requests and totals)"),
    ("c", "a capacity sweep of this trace: vLLM at a quarter to four times this pool and "
          "unbounded, curve and ceilings (q comes back)"),
    ("?, q", "this help, quit"),
)


SERVE = (
    "Serve mode (--mode serve) replays the trace on vLLM's real Scheduler: requests arrive "
    "by the trace's clock, run together, and hold their blocks while they decode. One step "
    "is one scheduler iteration. The block tables of every running sequence show at once, "
    "in vLLM's running order; when the pool runs out vLLM preempts the last one: its blocks "
    "are freed (cached ones stay cached-free) and it is recomputed when it is scheduled "
    "again, with a fresh prefix lookup that vLLM counts apart (preempted hits / queried). "
    "Cached tokens are the scheduler's own per-request figure (prefill_stats."
    "num_cached_tokens)."
)

SERVE_KEYS = (
    ("a / A", "next / previous step where a request arrives"),
    ("f / F", "next / previous step where a request finishes"),
)


@dataclass(frozen=True, slots=True)
class Guide:
    """What the help says about one view (each Screen names its own)."""

    held_states: bool  # its block tables show held blocks (H, s)
    pool_note: str  # how the current step's blocks show in the pool map
    sections: tuple[tuple[str, str], ...] = ()  # (heading, text) after the numbers
    keys: tuple[tuple[str, str], ...] = ()  # keys of this view, after the common ones


REQUESTS_PANE = (
    "Every request of the trace, listed as it is read. Its results (hits, share, outcome) "
    "fill in up to the furthest step you have visited and stay when you go back; later "
    "rows show … until you get there, even when the replay, which runs ahead of the "
    "cursor, already knows them. The pane's title says how far they go."
)

SEQUENTIAL_GUIDE = Guide(
    held_states=False,
    pool_note=" The current request's blocks show their block-table letter in the pool map.\n",
    sections=(("The requests pane", REQUESTS_PANE),),
)

SERVE_GUIDE = Guide(
    held_states=True,
    pool_note=(
        " Blocks a running sequence took or filled at this step show their letter in "
        "the pool map; blocks held from earlier show = (ref count 1) or s (shared) "
        "where cells print ids, and their ref count where they do not.\n"
    ),
    sections=(("Serve mode", SERVE),),
    keys=SERVE_KEYS,
)


class HelpBody(Widget):
    COMPONENT_CLASSES = palette.COMPONENT_CLASSES | {"help--heading"}

    def __init__(self, guide: Guide = SEQUENTIAL_GUIDE, **kw) -> None:
        super().__init__(**kw)
        self.guide = guide

    def render(self) -> Text:
        guide = self.guide
        head = self.get_component_rich_style("help--heading")
        out = Text()
        out.append("Prefix caching\n", head)
        out.append(INTRO + "\n\n")
        out.append("Block table states (one cell per logical block of the current request)\n", head)
        for state in BlockState:
            if state is BlockState.HELD and not guide.held_states:
                continue
            if state is BlockState.HIT_CPU:  # told with the CPU tier's strip (serve pane)
                continue
            out.append(f" {state.letter} ", self.get_component_rich_style(palette.STATE_CLASS[state]))
            out.append(f" {palette.STATE_LABEL[state]}: ", "bold")
            out.append(palette.STATE_HELP[state])
            if state is BlockState.SKIPPED:  # the legend shows it only then
                out.append(" Only with several KV cache groups (--hf-config).")
            out.append("\n")
        if guide.held_states:
            out.append(f" {palette.HELD_SHARED_GLYPH} ", self.get_component_rich_style(palette.HELD_SHARED))
            out.append(f" {palette.HELD_SHARED_LABEL}: ", "bold")
            out.append(palette.HELD_SHARED_HELP + "\n")
        out.append("\nPool map (one cell per physical block)\n", head)
        for cls in (palette.POOL_FREE, palette.POOL_CACHED, palette.POOL_USED,
                    palette.POOL_EVICTED, palette.POOL_NULL):
            glyph = "1" if cls == palette.POOL_USED else palette.POOL_GLYPH[cls]
            out.append(f" {glyph} ", self.get_component_rich_style(cls))
            out.append(f" {palette.POOL_LABEL[cls]}: ", "bold")
            out.append(palette.POOL_HELP[cls] + "\n")
        out.append(guide.pool_note)
        out.append("\nCached-free blocks and eviction\n", head)
        out.append(FREE_QUEUE + "\n\n")
        out.append("The recomputed last block\n", head)
        out.append(LAST_BLOCK + "\n\n")
        out.append("The numbers\n", head)
        out.append(NUMBERS + "\n\n")
        for heading, text in guide.sections:
            out.append(heading + "\n", head)
            out.append(text + "\n\n")
        out.append("Keys\n", head)
        for keys, what in KEYS + guide.keys:
            out.append(f" {keys:<14}", "bold")
            out.append(f" {what}\n")
        return out

