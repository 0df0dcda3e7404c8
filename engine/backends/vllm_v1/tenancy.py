"""A trace request's tenant and adapter as vLLM's Request takes them: ``cache_salt`` as
given, and a ``LoRARequest`` for a LoRA adapter name. vLLM puts both into its own block
hashes (``kv_cache_utils.generate_block_hash_extra_keys``): the salt into the first
block's, the adapter's name and path into every block's.

A trace names adapters but has no weights: the LoRARequest's path (which vLLM also hashes,
and requires non-empty) is the name itself, and its id is ``engine.model.lora_int_id``.
No LoRA config is built: vLLM's scheduler then applies no ``max_loras`` limit.
"""

from __future__ import annotations

import functools
from typing import Any

from engine.backends.vllm_v1.imports import V
from engine.model import lora_int_id


@functools.lru_cache(maxsize=4096)
def lora_request(name: str) -> Any:
    """One LoRARequest per adapter name (vLLM compares them by name)."""
    return V.LoRARequest(lora_name=name, lora_int_id=lora_int_id(name), lora_path=name)


def request_kwargs(cache_salt: str | None, lora_name: str | None) -> dict[str, Any]:
    """The keyword arguments of vLLM's Request for a tenant and an adapter."""
    return {
        "cache_salt": cache_salt,
        "lora_request": lora_request(lora_name) if lora_name is not None else None,
    }
