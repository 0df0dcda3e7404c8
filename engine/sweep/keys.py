"""prefix-tui's own block-chain keys, used only by the bounds (engine.sweep.bounds).

vLLM's figures never come from here: the replay uses vLLM's block hashes. A bound needs the
whole trace's future, which vLLM does not see, so prefix-tui keys each full block by its
content and its whole prefix, as vLLM's hash chain does: equal keys mean the same tokens
from the start of the sequence, under the same cache salt and LoRA adapter (the salt
enters the first block's hash in vLLM, the adapter every block's: both are in the root).
"""

from __future__ import annotations

import hashlib
from array import array
from dataclasses import dataclass

from engine.model import TraceRequest
from engine.replay.common import synth_output_tokens


def _root(salt: str | None, lora: str | None) -> int:
    # Stable across processes (str hashes are randomized per process; int tuples are not).
    digest = hashlib.blake2b(repr((salt, lora)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


@dataclass(frozen=True, slots=True)
class RequestKeys:
    """One request's full blocks, keyed.

    ``keys`` cover the tokens vLLM computes and caches for the request: the prompt, then the
    output but its last token (the last sampled token is never computed). ``usable`` is how
    many leading keys a lookup may hit: vLLM caps a hit at prompt length - 1 tokens, so a
    block-aligned prompt's last block is recomputed, never hit.
    """

    prompt_tokens: int
    output_tokens: int
    keys: array  # array('q'): one key per full block, in order
    usable: int


def request_keys(req: TraceRequest, block_size: int, max_model_len: int | None = None
                 ) -> RequestKeys:
    prompt = req.prompt_token_ids
    out = synth_output_tokens(req)
    if max_model_len is not None:
        out = out[: max(0, max_model_len - len(prompt))]
    seq = prompt + tuple(out[:-1]) if out else prompt
    keys = array("q")
    parent = _root(req.cache_salt, req.lora_name)
    for start in range(0, len(seq) - block_size + 1, block_size):
        parent = hash((parent, seq[start : start + block_size]))
        keys.append(parent)
    p = len(prompt)
    usable = max(0, p - 1) // block_size
    return RequestKeys(p, len(out), keys, usable)
