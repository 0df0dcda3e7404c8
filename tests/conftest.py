from __future__ import annotations

from pathlib import Path

import pytest

from engine.model import TraceRequest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared(*parts: str) -> Path:
    """A file under ../shared/data; the test is skipped when the checkout has none."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not present")
    return p


def req(index: int, tokens, *, output=None, output_len: int = 0, rid: str | None = None,
        arrival: float | None = None) -> TraceRequest:
    return TraceRequest(
        index=index,
        line=index + 1,
        request_id=rid if rid is not None else f"r{index}",
        arrival_time=float(index if arrival is None else arrival),
        prompt_token_ids=tuple(tokens),
        output_token_ids=tuple(output) if output is not None else None,
        output_len=output_len,
    )
