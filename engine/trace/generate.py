"""Client simulator: build single-turn or multi-turn chat traces in the native format.

Arrivals are a Poisson process (exponential gaps at ``rate`` requests/s). In a multi-turn
trace, turn k of a conversation sends the whole history (every earlier user turn and
assistant reply) plus user turn k, and carries assistant reply k as ``output``; so under
engine.trace.tokenize's template each turn's prompt + output is a prefix of the next turn's prompt.
A few conversations are open at once, so their turns interleave in arrival order.

Sources: ShareGPT (JSON or JSONL records ``{"id", "conversations": [{"from", "value"}]}``)
or a built-in synthetic one: made-up sentences from a small word list, every conversation
opening with the same system prompt, as chat products do. Same seed, same trace.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.errors import TraceError, UserError

KINDS = ("single-turn", "multi-turn")
OPEN_CONVERSATIONS = 4  # how many conversations interleave at any time
MAX_TURNS = 6  # synthetic conversations have 1..MAX_TURNS user turns

SYSTEM_PROMPT = (
    "You are a helpful assistant. Answer clearly and accurately, explain your reasoning "
    "step by step when it helps, and say so when you are not sure."
)

_TOPICS = (
    "sourdough baking", "the Rust borrow checker", "container gardening", "index funds",
    "marathon training", "the French Revolution", "home network setup", "watercolor painting",
    "learning Japanese", "climate models", "chess openings", "bicycle maintenance",
    "sleep hygiene", "SQL query planning", "birdwatching", "public speaking",
)
_NOUNS = (
    "plan", "detail", "step", "result", "method", "problem", "idea", "example", "schedule",
    "budget", "tool", "pattern", "mistake", "habit", "question", "answer", "system", "layer",
    "routine", "source", "reason", "change", "limit", "choice", "signal", "process", "part",
)
_ADJS = (
    "simple", "careful", "common", "useful", "small", "early", "steady", "clear", "hidden",
    "basic", "quick", "better", "strong", "typical", "practical", "gradual", "main", "new",
)
_VERBS = (
    "affects", "improves", "changes", "shapes", "limits", "explains", "supports", "slows",
    "follows", "needs", "reveals", "builds on", "depends on", "replaces", "protects",
)
_OPENERS = (
    "Can you help me understand {t}?", "I have a question about {t}.",
    "I am getting started with {t} and feel a bit lost.", "What should I know about {t}?",
)
_FOLLOWUPS = (
    "Thanks, that helps.", "Could you go into more detail?", "I tried that, but it did not work.",
    "What about a different approach?", "Can you give me an example?", "Why is that?",
)
_REPLY_OPENERS = (
    "Good question.", "Sure, here is an overview.", "Let me explain.", "That makes sense.",
)


_TAILS = (
    " when the {a} {n} is in place", " in most cases", " more than you might expect",
    " because the {a} {n} comes first", " over a few weeks", ", so check the {n} early",
)


def _sentence(rng: random.Random) -> str:
    a, n1, v, n2 = rng.choice(_ADJS), rng.choice(_NOUNS), rng.choice(_VERBS), rng.choice(_NOUNS)
    s = f"{'An' if a[0] in 'aeiou' else 'A'} {a} {n1} {v} the {n2}"
    if rng.random() < 0.6:
        s += rng.choice(_TAILS).format(a=rng.choice(_ADJS), n=rng.choice(_NOUNS))
    return s + "."


def _paragraph(rng: random.Random, lead: str, min_words: int, max_words: int) -> str:
    target = rng.randint(min_words, max_words)
    words = [lead]
    n = len(lead.split())
    while n < target:
        s = _sentence(rng)
        words.append(s)
        n += len(s.split())
    return " ".join(words)


def _synthetic_conversations(rng: random.Random) -> Iterable[tuple[str, list[tuple[str, str]]]]:
    """Endless (id, [(user, reply), ...]) conversations; user turns ~20-200 words."""
    for i in range(10**9):
        topic = rng.choice(_TOPICS)
        pairs = []
        for k in range(rng.randint(1, MAX_TURNS)):
            lead = rng.choice(_OPENERS).format(t=topic) if k == 0 else rng.choice(_FOLLOWUPS)
            user = _paragraph(rng, lead, 20, 200)
            reply = _paragraph(rng, rng.choice(_REPLY_OPENERS), 30, 250)
            pairs.append((user, reply))
        yield f"c{i}", pairs


def load_sharegpt(path: str | Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """(id, [(human, gpt), ...]) for each record that alternates human/gpt from the start.

    Records opening with a gpt turn (split-off continuations), system turns, or two turns of
    the same side are skipped; a final unanswered human turn is dropped.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such ShareGPT file")
    records: list[Any] = []
    try:
        with open(p, encoding="utf-8") as f:
            head = f.read(1)
            while head.isspace():
                head = f.read(1)
            f.seek(0)
            if head == "[":
                records = json.load(f)
            else:
                for lineno, line in enumerate(f, start=1):
                    if line.strip():
                        try:
                            records.append(json.loads(line))
                        except ValueError as exc:
                            raise TraceError(str(p), lineno, f"invalid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"{p}: not valid UTF-8") from None
    except ValueError as exc:  # json.load of a whole-file array
        raise UserError(f"{p}: invalid JSON: {exc}") from None
    if not isinstance(records, list):
        raise UserError(f"{p}: expected a JSON array or JSONL of conversation records")

    convs = []
    for n, rec in enumerate(records):
        turns = rec.get("conversations") if isinstance(rec, dict) else None
        if not isinstance(turns, list):
            continue
        pairs = []
        ok = True
        for k in range(0, len(turns) - 1, 2):
            h, g = turns[k], turns[k + 1]
            if not (_turn_is(h, "human") and _turn_is(g, "gpt")):
                ok = False
                break
            pairs.append((_clean(h["value"]), _clean(g["value"])))
        if len(turns) % 2 and not _turn_is(turns[-1], "human"):
            ok = False
        if ok and pairs:
            convs.append((str(rec.get("id", n)), pairs))
    if not convs:
        raise UserError(f"{p}: no usable conversations (need human/gpt turns alternating from the start)")
    return convs


def _turn_is(turn: Any, side: str) -> bool:
    return isinstance(turn, dict) and turn.get("from") == side and isinstance(turn.get("value"), str)


def _clean(text: str) -> str:
    # Lone surrogates (from "\udXXX" escapes) cannot be written as UTF-8.
    return text.encode("utf-8", "replace").decode("utf-8")


def generate(
    kind: str,
    *,
    num_requests: int,
    rate: float = 1.0,
    seed: int = 0,
    sharegpt: str | Path | None = None,
) -> list[dict]:
    """Native-format rows, ordered by arrival time."""
    if kind not in KINDS:
        raise UserError(f"unknown trace kind {kind!r} (choose {' or '.join(KINDS)})")
    if type(num_requests) is not int or num_requests < 1:
        raise UserError(f"--num-requests must be an int >= 1 (got {num_requests!r})")
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
        raise UserError(f"--rate must be a positive number of requests per second (got {rate!r})")
    rng = random.Random(seed)
    if sharegpt is not None:
        convs = load_sharegpt(sharegpt)
        rng.shuffle(convs)
        source: Iterable[tuple[str, list[tuple[str, str]]]] = iter(convs)
    else:
        source = _synthetic_conversations(rng)

    # Each conversation as its list of requests (turns in order).
    conversations: list[list[dict]] = []
    total = 0
    for conv_id, pairs in source:
        if total >= num_requests:
            break
        if kind == "single-turn":
            pairs = pairs[:1]
        pairs = pairs[: num_requests - total]
        system = [{"role": "system", "content": SYSTEM_PROMPT}] if sharegpt is None else []
        history: list[dict] = system
        reqs = []
        for turn, (user, reply) in enumerate(pairs):
            messages = history + [{"role": "user", "content": user}]
            reqs.append({
                "request_id": f"{conv_id}-t{turn}",
                "conversation_id": conv_id,
                "turn": turn,
                "messages": messages,
                "output": reply,
            })
            history = messages + [{"role": "assistant", "content": reply}]
        conversations.append(reqs)
        total += len(reqs)
    if total < num_requests:
        raise UserError(
            f"{sharegpt}: only {total} {kind} requests available, asked for {num_requests}"
        )

    # Interleave: each arrival goes to a random open conversation's next turn.
    rows: list[dict] = []
    open_convs: list[list[dict]] = []
    pending = iter(conversations)
    t = 0.0
    while len(rows) < num_requests:
        while len(open_convs) < OPEN_CONVERSATIONS:
            nxt = next(pending, None)
            if nxt is None:
                break
            open_convs.append(nxt)
        conv = rng.choice(open_convs)
        t += rng.expovariate(rate)
        row = conv.pop(0)
        rows.append({"request_id": row.pop("request_id"), "arrival_time": round(t, 6), **row})
        if not conv:
            open_convs.remove(conv)
    return rows


def write_jsonl(rows: Iterable[dict], path: str | Path, *, force: bool = False) -> int:
    """Write rows atomically (temp file + rename); returns how many were written."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{p} is a directory")
    if p.exists() and not force:
        raise UserError(f"{p} exists; pass --force to overwrite")
    parent = p.parent
    if not parent.is_dir():
        raise UserError(f"cannot write {p}: directory {parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{p.name}.", suffix=".tmp")
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
        # mkstemp makes the file 0600; give it the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return n


def add_gen_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=KINDS, required=True, help="trace shape")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="JSONL file to write")
    parser.add_argument("--num-requests", type=int, default=100, help="requests to generate (default 100)")
    parser.add_argument("--rate", type=float, default=1.0, help="Poisson arrival rate, requests/s (default 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--sharegpt", metavar="FILE", help="ShareGPT JSON/JSONL to take conversations from")
    parser.add_argument("--force", action="store_true", help="overwrite FILE if it exists")


def run_gen(args: argparse.Namespace) -> int:
    rows = generate(
        args.kind,
        num_requests=args.num_requests,
        rate=args.rate,
        seed=args.seed,
        sharegpt=args.sharegpt,
    )
    n = write_jsonl(rows, args.output, force=args.force)
    print(f"wrote {n} requests to {args.output}")
    return 0
