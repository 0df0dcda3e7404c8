"""The --json export. Other tools read it, so the keys named in README are a contract."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from engine.errors import UserError
from engine.metrics import Breakdown, by_tenant_dict, by_type_dict, chat_template_dict, totals_dict
from engine.model import RequestResult, Totals
from engine.reasons import reasons_row

SCHEMA_VERSION = 1


def request_row(r: RequestResult) -> dict:
    req = r.request
    return {
        "request_id": req.request_id,
        "line": req.line,
        "arrival_time": req.arrival_time,
        "conversation_id": req.conversation_id,
        "turn": req.turn,
        "cache_salt": req.cache_salt,
        "lora_name": req.lora_name,
        "request_type": req.request_type,
        # prefix-tui's chat-template check: a later turn, and where it leaves the previous one
        "template_checked": req.template_checked,
        "template_break": req.template_break._asdict() if req.template_break is not None else None,
        "prompt_tokens": r.prompt_tokens,
        "output_tokens": r.output_tokens,
        "hit_tokens": r.hit_tokens,
        "hit_blocks": r.hit_blocks,
        "new_blocks": r.new_blocks,
        "output_blocks": r.output_blocks,
        "evicted_blocks": r.evicted_blocks,
        "prompt_blocks": r.prompt_blocks,
        "sharing_fraction": r.sharing_fraction,
        "recomputed_last_block": r.recomputed_last_block,
        "outcome": r.outcome.value,
        "message": r.message,
        # serve mode (null in sequential mode), on the simulated clock
        "queue_wait_s": r.queue_wait_s,
        "ttft_s": r.ttft_s,
        "preemptions": r.preemptions,
        "finish_iteration": r.finish_iteration,
        "finish_time_s": r.finish_time_s,
        # several KV cache groups (--hf-config): per group, in settings.kv_cache_groups' order
        **({"groups": [g._asdict() for g in r.groups]} if r.groups else {}),
        # serve mode, vLLM's prefill_stats: hit_tokens = gpu_hit_tokens + cpu_hit_tokens
        "gpu_hit_tokens": r.gpu_hit_tokens,
        "cpu_hit_tokens": r.cpu_hit_tokens,
        # why missed prompt blocks missed, and where hits came from (engine.reasons)
        **reasons_row(r.reasons),
        "replica": r.replica,  # --instances: the replica the router chose (else null)
    }


def check_writable(path: str | Path, force: bool, inputs: tuple[str | Path, ...] = ()) -> None:
    """Fail before a long replay, not after it: never clobber a file unless --force, never
    the input (with or without --force), and only where a file can be written."""
    p = Path(path)
    for src in inputs:
        if _same_file(p, Path(src)):
            raise UserError(f"{p}: is the input trace; choose another output file")
    if p.is_dir():
        raise UserError(f"{p}: is a directory")
    if p.exists() and not force:
        raise UserError(f"{p}: exists; pass --force to overwrite it")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise UserError(f"{parent}: no such directory")
    # Probe with a real temp file: permission bits alone miss read-only mounts and /proc.
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".probe", dir=parent)
    except OSError as exc:
        raise UserError(f"{parent}: cannot write there ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | Path, obj: dict) -> None:
    """Write to a temp file beside the target, then rename: never a half-written file.
    The file gets the mode a plain open() would give it (mkstemp's is 0600)."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=1, ensure_ascii=True)
            fh.write("\n")
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_document(
    settings: dict, totals: Totals, rows: list[dict], status: dict,
    breakdown: Breakdown | None = None, reasons: dict | None = None,
) -> dict:
    """The --json document; ``rows`` are request_row()s, made as the replay goes so that no
    request's tokens are kept."""
    doc = {
        "schema_version": SCHEMA_VERSION,
        "settings": settings,
        "status": status,
        "totals": totals_dict(totals),
    }
    if breakdown is not None:
        doc["by_tenant"] = by_tenant_dict(breakdown)
        doc["by_type"] = by_type_dict(breakdown)
        doc["chat_template"] = chat_template_dict(breakdown)
    if reasons is not None:
        doc["reasons"] = reasons
    doc["requests"] = rows
    return doc


def write_text_atomic(path: str | Path, text: str) -> None:
    """write_json_atomic for text (sweep --csv): a temp file beside the target, renamed."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
