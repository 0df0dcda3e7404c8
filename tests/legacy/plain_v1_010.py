"""A plain loop driving vLLM 0.10.1.1's V1 KVCacheManager directly, one request at a time,
decode token by token, as its scheduler calls it; run under .venv-legacy's Python.

    python plain_v1_010.py IN.json   ->  stdout: [[outcome, hit_tokens, evicted], ...]

IN.json: {"block_size", "num_blocks", "requests": [[prompt ids, output ids], ...]}.
Nothing from prefix-tui. The one line that is not a plain import: vllm.v1.request imports
the package vllm.v1.structured_output, whose __init__ needs the OpenAI server stack that
.venv-legacy does not install, so the package is registered without its __init__ (as
prefix-tui's bridge does: engine/backends/vllm_v1_010/imports.py).
"""

import json
import sys
import types

import torch
import vllm.v1

pkg = types.ModuleType("vllm.v1.structured_output")
pkg.__path__ = [vllm.v1.__path__[0] + "/structured_output"]
sys.modules["vllm.v1.structured_output"] = pkg

from vllm.distributed.kv_events import BlockRemoved  # noqa: E402
from vllm.sampling_params import SamplingParams  # noqa: E402
from vllm.utils import sha256  # noqa: E402
from vllm.v1.core import kv_cache_utils  # noqa: E402
from vllm.v1.core.kv_cache_manager import KVCacheManager  # noqa: E402
from vllm.v1.kv_cache_interface import (  # noqa: E402
    FullAttentionSpec,
    KVCacheConfig,
    KVCacheGroupSpec,
)
from vllm.v1.request import Request  # noqa: E402


def main(path):
    spec = json.load(open(path))
    bs, n = spec["block_size"], spec["num_blocks"]
    max_len = bs * (n - 1)  # every block but the null block
    kv_spec = FullAttentionSpec(block_size=bs, num_kv_heads=1, head_size=1,
                                dtype=torch.float16, use_mla=False)
    config = KVCacheConfig(num_blocks=n, kv_cache_tensors=[],
                           kv_cache_groups=[KVCacheGroupSpec(["layer.0"], kv_spec)])
    kv_cache_utils.init_none_hash(sha256)
    hasher = kv_cache_utils.get_request_block_hasher(bs, sha256)
    mgr = KVCacheManager(config, max_model_len=max_len, enable_caching=True,
                         log_stats=True, enable_kv_cache_events=True)
    prev, rows = None, []
    for i, (prompt, output) in enumerate(spec["requests"]):
        if prev is not None:
            mgr.free(prev)
            prev = None
        if len(prompt) >= max_len:
            rows.append(["too_long", 0, 0])
            continue
        req = Request(request_id=str(i), prompt_token_ids=prompt, multi_modal_kwargs=None,
                      multi_modal_hashes=None, multi_modal_placeholders=None,
                      sampling_params=SamplingParams(max_tokens=1), pooling_params=None,
                      eos_token_id=None, arrival_time=float(i), block_hasher=hasher)
        blocks, hit = mgr.get_computed_blocks(req)
        if mgr.allocate_slots(req, len(prompt) - hit, hit, blocks) is None:
            rows.append(["not_fitted", 0, removed(mgr)])
            continue
        req.num_computed_tokens = len(prompt)
        outcome = "ok"
        wanted = output[: max_len - len(prompt)]
        for j, token in enumerate(wanted):
            req.append_output_token_ids(token)
            if j == len(wanted) - 1:
                break  # the last sampled token is never computed
            if mgr.allocate_slots(req, 1) is None:
                outcome = "truncated"
                break
            req.num_computed_tokens += 1
        if len(wanted) < len(output):
            outcome = "truncated"
        rows.append([outcome, hit, removed(mgr)])
        prev = req
    json.dump(rows, sys.stdout)


def removed(mgr) -> int:
    return sum(len(ev.block_hashes) for ev in mgr.take_events() if isinstance(ev, BlockRemoved))


if __name__ == "__main__":
    main(sys.argv[1])
