"""Serve mode's per-group figures (--hf-config, several KV cache groups) against vLLM's
Scheduler driven plainly, and against the sequential replay where both admit alike.

The plain loop builds the groups with vLLM's get_kv_cache_groups, hands vLLM's own
Scheduler a KVCacheConfig made from them, and runs schedule() / update_from_output() with
a stand-in model output; it reads each request's lookup (vLLM's get_computed_blocks inside
schedule()) and the blocks allocate_slots hands out for its prompt, with no prefix-tui code
in between. The bundled 1:1 (gpt-oss-like, window 128) and 5:1 (Gemma-3-like, window 1024)
configs; prompts long enough that both windows leave places to vLLM's null block.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from engine.backends.vllm_v1.hybrid import layer_specs
from engine.backends.vllm_v1.scheduler import V1Scheduler
from engine.backends.vllm_v1.serve_config import build_vllm_config
from engine.hf_config import read_hf_config
from engine.model import TraceRequest
from engine.replay.serve import ServeReplay
from engine.settings import EngineSettings, KVLayout, ServeSettings
from tui.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "traces" / "configs"
BS = 32
MAX_LEN = 4096
# (config, pool blocks, prefill token budget): 5:1 has six groups, so six blocks per place;
# the small budget makes vLLM prefill each prompt in several chunks.
CASES = {"1:1": ("sliding-1to1-gpt-oss.json", 300, 256),
         "5:1": ("sliding-5to1-gemma3.json", 700, 512)}


def chats(system_len: int, seed: int = 3, convs: int = 3, turns: int = 2) -> list[TraceRequest]:
    """Conversations sharing a system prompt; each turn extends the previous prompt and
    reply. All arrive at once, so vLLM's scheduler batches them."""
    rng = random.Random(seed)
    system = [rng.randrange(1, 30000) for _ in range(system_len)]
    out: list[TraceRequest] = []
    hist = {c: list(system) for c in range(convs)}
    for t in range(turns):
        for c in range(convs):
            hist[c].extend(rng.randrange(1, 30000) for _ in range(rng.randrange(40, 200)))
            reply = tuple(rng.randrange(1, 30000) for _ in range(rng.randrange(4, 30)))
            i = len(out)
            out.append(TraceRequest(i, i + 1, f"c{c}t{t}", 0.0, tuple(hist[c]),
                                    output_token_ids=reply))
            hist[c].extend(reply)
    return out


def settings(cfg: str, num_blocks: int) -> EngineSettings:
    return EngineSettings(block_size=BS, num_blocks=num_blocks, max_model_len=MAX_LEN,
                          layout=KVLayout(model=read_hf_config(CONFIGS / cfg)))


def plain_scheduler_groups(cfg: str, requests, num_blocks: int, serve: ServeSettings):
    """Per request id: per group (real cached blocks, null-block places) of the lookup
    vLLM's Scheduler made before admitting it, and the blocks allocate_slots handed out for
    its prompt per group; vLLM's Scheduler over groups from get_kv_cache_groups."""
    from vllm.config import CacheConfig
    from vllm.sampling_params import SamplingParams
    from vllm.utils.hashing import get_hash_fn_by_name
    from vllm.v1.core.kv_cache_planning import get_kv_cache_groups
    from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.kv_cache_interface import KVCacheConfig
    from vllm.v1.outputs import ModelRunnerOutput
    from vllm.v1.request import Request
    from vllm.v1.structured_output import StructuredOutputManager

    s = settings(cfg, num_blocks)
    vllm_config = build_vllm_config(s, serve)
    vllm_config.cache_config.kv_cache_layout = "LBNHC"
    vllm_config.scheduler_config.disable_hybrid_kv_cache_manager = False  # a GPU's answer
    vllm_config.cache_config.num_gpu_blocks = num_blocks
    groups = get_kv_cache_groups(vllm_config, layer_specs(s.layout.model, BS))
    kv = KVCacheConfig(num_blocks=num_blocks, kv_cache_tensors=[], kv_cache_groups=groups,
                       prefix_cache_retention_interval=CacheConfig().prefix_cache_retention_interval)
    sched = Scheduler(vllm_config=vllm_config, kv_cache_config=kv,
                      structured_output_manager=StructuredOutputManager(vllm_config),
                      block_size=BS, hash_block_size=BS, log_stats=True)
    manager = sched.kv_cache_manager
    lookup, allocate = manager.get_computed_blocks, manager.allocate_slots
    last: dict[str, tuple] = {}
    new: dict[str, list[int]] = {}

    def get_computed_blocks(request, *a, **k):
        result = lookup(request, *a, **k)
        last[request.request_id] = tuple(
            (sum(not b.is_null for b in g), sum(b.is_null for b in g)) for g in result[0].blocks)
        return result

    def allocate_slots(request, *a, **k):
        prompt = request.num_computed_tokens < request.num_prompt_tokens
        result = allocate(request, *a, **k)
        if result is not None and prompt and request.num_preemptions == 0:
            got = [len(g) for g in result.blocks]
            had = new.setdefault(request.request_id, [0] * len(got))
            new[request.request_id] = [x + y for x, y in zip(had, got)]
        return result

    manager.get_computed_blocks, manager.allocate_slots = get_computed_blocks, allocate_slots
    hash_fn = get_hash_fn_by_name(vllm_config.cache_config.prefix_caching_hash_algo)
    init_none_hash(hash_fn)
    hasher = get_request_block_hasher(BS, hash_fn)
    outputs = {}
    for tr in requests:
        outputs[str(tr.index)] = list(tr.output_token_ids)
        sched.add_request(Request(str(tr.index), list(tr.prompt_token_ids),
                                  SamplingParams(max_tokens=len(tr.output_token_ids),
                                                 ignore_eos=True),
                                  None, block_hasher=hasher))
    admitted: dict[str, tuple] = {}
    while sched.has_requests():
        so = sched.schedule()
        for nr in so.scheduled_new_reqs:
            admitted.setdefault(nr.req_id, last[nr.req_id])
        ids = list(so.num_scheduled_tokens)
        tokens = []
        for rid in ids:
            req = sched.requests[rid]
            done = req.num_computed_tokens >= req.num_tokens  # the chunk reaches the end
            tokens.append([outputs[rid][req.num_output_tokens]] if done else [])
        sched.update_from_output(so, ModelRunnerOutput(
            req_ids=ids, req_id_to_index={r: i for i, r in enumerate(ids)},
            sampled_token_ids=tokens))
    return admitted, new


@pytest.mark.parametrize("name", ["1:1", "5:1"])
def test_serve_groups_equal_vllms_scheduler_driven_plainly(name):
    cfg, num_blocks, budget = CASES[name]
    requests = chats(system_len=1100 if name == "5:1" else 200)
    serve = ServeSettings(async_scheduling=False, max_num_batched_tokens=budget)
    sched = V1Scheduler(settings(cfg, num_blocks), serve)
    rows = {row.seq_id: row for rec in ServeReplay(sched, requests, detail=False)
            for row in rec.rows}
    hits, new = plain_scheduler_groups(cfg, requests, num_blocks, serve)
    assert len(rows) == len(requests) and set(hits) == set(rows)
    assert {k: tuple((g.hit_blocks, g.skipped_blocks) for g in r.groups)
            for k, r in rows.items()} == hits
    assert {k: [g.new_blocks for g in r.groups] for k, r in rows.items()} == new
    assert all(r.new_blocks == sum(new[k]) for k, r in rows.items())
    # Both windows left places to the null block, and the full group hit more.
    assert sum(g[0][1] for g in hits.values()) > 0
    assert sum(g[-1][0] for g in hits.values()) > sum(g[0][0] for g in hits.values())


def test_serve_by_group_equals_sequential_when_requests_come_one_at_a_time(tmp_path, capsys):
    """Each request arrives after the one before it finished: vLLM's scheduler admits in
    trace order, alone, as the sequential replay does, so the per-group figures agree,
    row by row and in totals.by_group (chunked prefill: the prompt's blocks come in
    several allocations in serve mode, one in sequential mode)."""
    trace = tmp_path / "t.jsonl"
    with trace.open("w") as f:
        for i, r in enumerate(chats(system_len=200, turns=3)):
            f.write(json.dumps({"request_id": r.request_id, "arrival_time": 10.0 * i,
                                "prompt_token_ids": list(r.prompt_token_ids),
                                "output_token_ids": list(r.output_token_ids)}) + "\n")
    common = ["--headless", "--no-progress", "--hf-config", str(CONFIGS / CASES["1:1"][0]),
              "--block-size", str(BS), "--num-gpu-blocks-override", "300",
              "--max-model-len", str(MAX_LEN)]
    docs = {}
    for mode, extra in (("sequential", []), ("serve", ["--max-num-batched-tokens", "128"])):
        out = tmp_path / f"{mode}.json"
        assert main([str(trace), *common, "--mode", mode, *extra, "--json", str(out)]) == 0
        docs[mode] = json.loads(out.read_text())
    report = capsys.readouterr().out
    assert report.count("By KV cache group") == 2  # the report's section, in both modes
    seq, srv = docs["sequential"], docs["serve"]
    assert len(srv["totals"]["by_group"]) == 2
    assert srv["totals"]["by_group"] == seq["totals"]["by_group"]
    assert srv["totals"]["by_group"][0]["skipped_blocks"] > 0
    by_id = {r["request_id"]: r for r in seq["requests"]}
    for row in srv["requests"]:
        assert (row["groups"], row["new_blocks"], row["hit_tokens"]) == (
            by_id[row["request_id"]]["groups"], by_id[row["request_id"]]["new_blocks"],
            by_id[row["request_id"]]["hit_tokens"])
