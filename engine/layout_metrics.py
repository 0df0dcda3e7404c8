"""Figures per KV cache group (a model with several groups, --hf-config), as numbers.

vLLM's hit for a request is the one every group agrees on (the coordinator's fixed point:
hit_tokens). Per group, vLLM's lookup hands back real cached blocks, and its null block
where a sliding window needs none; allocate_slots hands out new blocks per group.
"""

from __future__ import annotations

from dataclasses import replace

from engine.model import KVGroupInfo, RequestResult, Totals

SEC_GROUPS = "By KV cache group (vLLM's lookups)"


def _add(acc: tuple[int, ...], values: list[int]) -> tuple[int, ...]:
    if len(acc) < len(values):
        acc = acc + (0,) * (len(values) - len(acc))
    return tuple(a + (values[i] if i < len(values) else 0) for i, a in enumerate(acc))


def group_sums(t: Totals, r: RequestResult, fitted: bool) -> dict[str, tuple[int, ...]]:
    """Totals' per-group fields after one more request (carried over when it has none)."""
    if not (fitted and r.groups):
        return {"group_hit_blocks": t.group_hit_blocks,
                "group_skipped_blocks": t.group_skipped_blocks,
                "group_new_blocks": t.group_new_blocks}
    return {
        "group_hit_blocks": _add(t.group_hit_blocks, [g.hit_blocks for g in r.groups]),
        "group_skipped_blocks": _add(t.group_skipped_blocks,
                                     [g.skipped_blocks for g in r.groups]),
        "group_new_blocks": _add(t.group_new_blocks, [g.new_blocks for g in r.groups]),
    }


def add_new_blocks(t: Totals, added: list[int] | tuple[int, ...]) -> Totals:
    """Totals after a request's later prefill chunk got new blocks (serve mode's chunked
    prefill: engine.replay.serve_groups), per group and over every group."""
    return replace(t, blocks_new=t.blocks_new + sum(added),
                   group_new_blocks=_add(t.group_new_blocks, list(added)))


def by_group_list(t: Totals) -> list[dict]:
    """The --json ``totals.by_group``: per group, the cached blocks vLLM's lookups handed
    back, the places they filled with its null block (outside a sliding window), and the
    blocks allocated for prompts."""
    return [
        {"group": g, "hit_blocks": hit, "skipped_blocks": skipped, "new_blocks": new}
        for g, (hit, skipped, new) in enumerate(
            zip(t.group_hit_blocks, t.group_skipped_blocks, t.group_new_blocks))
    ]


def group_rows(t: Totals, groups: tuple[KVGroupInfo, ...]) -> list[tuple[str, str, int, int, int]]:
    """(key, label, hit blocks, null blocks, new blocks) per group, for the report and the
    inspector's totals; empty for a single group."""
    rows = []
    for g, (hit, skipped, new) in enumerate(
            zip(t.group_hit_blocks, t.group_skipped_blocks, t.group_new_blocks)):
        info = groups[g] if g < len(groups) else None
        label = f"group {g} ({info.label}, {info.num_layers} layers)" if info else f"group {g}"
        rows.append((f"group:{g}", label, hit, skipped, new))
    return rows
