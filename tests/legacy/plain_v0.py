"""A plain loop driving vLLM 0.10.1.1's V0 block manager directly, as V0's Scheduler does
for one request at a time, token by token; run under .venv-legacy's Python by the tests.

    python plain_v0.py IN.json   ->  stdout: [[outcome, hit_tokens, evicted], ...]

IN.json: {"block_size", "num_blocks", "requests": [[prompt ids, output ids], ...]}.
Nothing from prefix-tui: vLLM's own calls, in vllm/core/scheduler.py's order.
"""

import json
import sys

from vllm.core.block_manager import SelfAttnBlockSpaceManager
from vllm.core.interfaces import AllocStatus
from vllm.inputs import token_inputs
from vllm.sequence import Logprob, Sequence, SequenceGroup, SequenceStatus
from vllm.utils import Device


def main(path):
    spec = json.load(open(path))
    bs, n = spec["block_size"], spec["num_blocks"]
    bm = SelfAttnBlockSpaceManager(bs, n, 0, enable_caching=True)
    alloc = bm.block_allocator._allocators[Device.GPU]
    now, prev, rows = 0.0, None, []
    for i, (prompt, output) in enumerate(spec["requests"]):
        if prev is not None:
            prev.status = SequenceStatus.FINISHED_STOPPED
            bm.free(prev)
            prev = None
        cached_before = dict(alloc._cached_blocks)
        seq = Sequence(i, token_inputs(prompt), bs)
        group = SequenceGroup(str(i), [seq], arrival_time=float(i))
        if len(prompt) > bs * n:
            rows.append(["too_long", 0, 0])
            continue
        bm.get_num_cached_tokens(seq)
        if bm.can_allocate(group) != AllocStatus.OK:
            bm.remove_seq_from_computed_blocks_tracker(seq)
            rows.append(["not_fitted", 0, 0])
            continue
        bm.allocate(group)
        seq.status = SequenceStatus.RUNNING
        now += 1
        bm.access_all_blocks_in_seq(seq, now)
        hit = len(bm.get_common_computed_block_ids([seq])) * bs
        bm.mark_blocks_as_computed(group, len(prompt))
        seq.data.update_num_computed_tokens(len(prompt))
        outcome = "ok"
        wanted = output[: bs * n - len(prompt)]
        for j, token in enumerate(wanted):
            seq.append_token_id(token, {token: Logprob(0.0)})
            if j == len(wanted) - 1:
                break
            if not bm.can_append_slots(group, 0):
                outcome = "truncated"
                break
            bm.append_slots(seq, 0)
            now += 1
            bm.access_all_blocks_in_seq(seq, now)
            bm.mark_blocks_as_computed(group, 1)
            seq.data.update_num_computed_tokens(1)
        if len(wanted) < len(output):
            outcome = "truncated"
        evicted = sum(1 for h, b in cached_before.items() if alloc._cached_blocks.get(h) != b)
        rows.append([outcome, hit, evicted])
        prev = seq
    json.dump(rows, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
