"""`prefix-tui sweep`: each point equals vLLM's KVCacheManager driven plainly at that pool
size, request by request; local processes and Ray tasks give identical points.

One small sweep (16 requests, block size 4) runs once per module in spawned worker
processes; the plain loop below imports vLLM directly, with no prefix-tui code between.
"""

from __future__ import annotations

import json
import random

import pytest

from engine.backends import BuildOptions
from engine.settings import EngineSettings
from engine.sweep.executors import ExecutorChoice, run_points
from engine.sweep.plan import SweepOutcome, plan_sweep
from engine.sweep.points import CSV_MISS_KEYS, MISS_KEYS, point_row
from engine.trace.reader import TraceReader, TraceSource

BS = 4


def write_trace(path) -> None:
    """Requests sharing a system prompt and a few documents, with short replies."""
    rng = random.Random(7)
    system = list(range(1, 9))
    docs = [list(range(100 * d, 100 * d + 8)) for d in range(1, 4)]
    lines = []
    for i in range(16):
        prompt = system + (docs[rng.randrange(3)] if rng.random() < 0.7 else [])
        prompt += [1000 + 10 * i + k for k in range(rng.randrange(1, 7))]
        lines.append(json.dumps({"prompt_token_ids": prompt,
                                 "output_token_ids": [5000 + 10 * i, 5001 + 10 * i]}))
    path.write_text("\n".join(lines) + "\n")


def plain_point(requests, num_blocks: int, warmup: int) -> dict:
    """vLLM's KVCacheManager at this pool size, the scheduler's calls per request: figures
    from its PrefixCacheStats and BlockRemoved events, after the warm-up."""
    import torch
    from vllm.distributed.kv_events import BlockRemoved
    from vllm.sampling_params import SamplingParams
    from vllm.utils.hashing import get_hash_fn_by_name
    from vllm.v1.core.kv_cache_manager import KVCacheManager
    from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
    from vllm.v1.request import Request

    hash_fn = get_hash_fn_by_name("sha256")
    init_none_hash(hash_fn)
    spec = FullAttentionSpec(block_size=BS, num_kv_heads=1, head_size=1, dtype=torch.float16)
    cfg = KVCacheConfig(num_blocks=num_blocks, kv_cache_tensors=[],
                        kv_cache_groups=[KVCacheGroupSpec(["l"], spec)])
    m = KVCacheManager(cfg, max_model_len=BS * (num_blocks - 1), scheduler_block_size=BS,
                       hash_block_size=BS, enable_caching=True, log_stats=True,
                       enable_kv_cache_events=True)
    hasher = get_request_block_hasher(BS, hash_fn)
    out = dict(hits=0, queries=0, evictions=0, not_fitted=0, requests=0, tokens=0)
    for i, tr in enumerate(requests):
        counted = i >= warmup
        r = Request(str(i), list(tr.prompt_token_ids), SamplingParams(max_tokens=1), None,
                    block_hasher=hasher)
        limit = BS * (num_blocks - 1)  # max_model_len, as vLLM's start-up check allows
        # vLLM's input processor rejects a prompt that leaves no room for an output token.
        ok = len(tr.prompt_token_ids) < limit
        if ok:
            blocks, n, _ = m.get_computed_blocks(r)
            ok = m.allocate_slots(r, r.num_tokens - n, n, blocks) is not None
        if ok:
            m.record_prefix_cache_stats(r, n)
            r.num_computed_tokens = r.num_tokens
            # vLLM stops a request at max_model_len tokens (check_stop).
            out_tokens = list(tr.output_token_ids)[: limit - len(tr.prompt_token_ids)]
            r.append_output_token_ids(out_tokens[0])
            for tok in out_tokens[1:]:  # token-by-token decode
                assert m.allocate_slots(r, 1) is not None
                r.num_computed_tokens += 1
                r.append_output_token_ids(tok)
        stats = m.make_prefix_cache_stats()
        removed = sum(len(e.block_hashes) for e in m.take_events() if isinstance(e, BlockRemoved))
        if counted:
            out["requests"] += 1
            out["evictions"] += removed
            if ok:
                out["hits"] += stats.hits
                out["queries"] += stats.queries
                out["tokens"] += len(tr.prompt_token_ids)
            else:
                out["not_fitted"] += 1
        if ok:
            m.free(r)
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "tiny.jsonl"
    write_trace(path)
    plan = plan_sweep(engine="v1", mode="sequential",
                      options=BuildOptions(EngineSettings(block_size=BS)),
                      source=TraceSource(str(path)), block_sizes=[BS],
                      pools=[6, 12, None], warmup_fraction=0.25)
    seen: list[int] = []
    results = run_points(plan.specs, ExecutorChoice("local", jobs=2),
                         lambda r: seen.append(r.index))
    assert sorted(seen) == [s.index for s in plan.specs]
    return path, plan, SweepOutcome(plan, tuple(results))


def test_each_point_equals_a_plain_vllm_loop(sweep):
    path, plan, outcome = sweep
    requests = list(TraceReader(path))
    assert plan.warmup == 4 and len(requests) == 16
    pairs = outcome.point_pairs()
    assert [s.num_blocks for s, _ in pairs] == [6, 12, None]
    for spec, result in pairs:
        assert result.status == "complete", result.message
        t = result.totals
        got = dict(hits=t.hits, queries=t.queries, evictions=t.evictions,
                   not_fitted=t.not_fitted, requests=t.requests, tokens=t.tokens)
        assert got == plain_point(requests, result.num_blocks_run, plan.warmup), spec.label
    small, _mid, unbounded = (r for _s, r in pairs)
    # The sweep covers eviction (the small pool evicts, the unbounded one never does) and hits.
    assert small.totals.evictions > 0 and unbounded.totals.evictions == 0
    assert 0 < small.totals.hits < unbounded.totals.hits


def test_bounds_sit_at_or_above_vllm(sweep):
    _path, _plan, outcome = sweep
    (ceiling,) = outcome.ceilings()
    unbounded = ceiling.unbounded.totals
    # No n - 1 rule and no capacity limit: the reuse bound is at least vLLM's plateau.
    assert ceiling.reuse.hit_tokens >= unbounded.hits
    for spec, r in outcome.point_pairs():
        if spec.num_blocks is not None:
            assert r.bound.query_tokens == r.totals.queries
            assert r.bound.hit_tokens >= r.totals.hits  # Belady-style beats vLLM's order here


def test_local_and_ray_give_identical_points(sweep):
    import ray

    _path, plan, local = sweep
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        specs = plan.specs[:1] + plan.specs[2:]  # the small pool and the unbounded one
        got = run_points(specs, ExecutorChoice("ray"), lambda r: None)
    finally:
        ray.shutdown()
    on_ray = SweepOutcome(plan, tuple(got))

    def rows(o: SweepOutcome) -> list[dict]:
        return [{k: v for k, v in point_row(s, r).items() if k != "seconds"}
                for s, r in o.point_pairs() if s in specs]

    assert rows(on_ray) == rows(local) and len(rows(on_ray)) == 2
    assert [r.bound for r in on_ray.results] == [local.result(s).bound for s in specs]


def test_plot_file_draws_vllms_points_and_the_labelled_bounds(sweep, tmp_path):
    # `sweep --plot FILE`: the curve is vLLM's hit rate of each finite point; prefix-tui's
    # bound and reuse ceiling are labelled as prefix-tui's.
    pytest.importorskip("matplotlib", reason="--plot needs the plot extra (matplotlib)")
    from engine import metrics
    from tui.plot import sweep_figure, write_sweep

    _path, plan, outcome = sweep
    ax = sweep_figure(outcome, "t").axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    finite = [(s, r) for s, r in outcome.point_pairs() if s.num_blocks is not None]
    finite.sort(key=lambda pair: pair[0].capacity_tokens)
    want = [100 * metrics.hit_rate(r.totals) for _s, r in finite]
    assert list(lines[f"vLLM hit rate, block {BS}"].get_ydata()) == pytest.approx(want)
    assert f"farthest-next-use bound (prefix-tui's), block {BS}" in lines
    assert f"reuse bound (prefix-tui's), block {BS}" in lines
    out = tmp_path / "curve.png"
    write_sweep(outcome, str(out), False, "t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def registry_rows(path, num_blocks: int, mode: str = "sequential", serve=None):
    """The same replay run plainly through the backend registry, in this process: every
    request's row (its miss reasons) and the totals at the end."""
    from engine.backends import lookup

    backend = lookup("v1", mode).build(BuildOptions(
        EngineSettings(block_size=BS, num_blocks=num_blocks), serve))
    rows, last = [], None
    for record in backend.replay(TraceReader(path), detail=False):
        assert record.error is None
        rows += record.rows
        last = record.totals
    return rows, last


def test_miss_reasons_per_point_equal_the_registry_rows(sweep):
    # Issue 15: totals by reason in the sweep. Each point's reasons (counted after the
    # warm-up, in the point's own process) equal the sum over the rows of the same replay
    # run here through the registry, and add up to prompt blocks - hit blocks.
    path, plan, outcome = sweep
    seen = set()
    for spec, result in outcome.point_pairs():
        rows, _ = registry_rows(path, result.num_blocks_run)
        counted = [r for r in rows if r.request.index >= plan.warmup and r.outcome.served]
        want = {k: sum(r.reasons.counts()[k] for r in counted) for k in MISS_KEYS}
        assert result.reasons.counts() == want, spec.label
        row = point_row(spec, result)
        assert row["miss_blocks"] == want and list(row["miss_blocks"]) == list(MISS_KEYS)
        assert sum(want.values()) == row["prompt_blocks"] - row["hit_blocks"] > 0
        assert row["prompt_blocks"] == sum(r.prompt_blocks for r in counted)
        seen |= {k for k, v in want.items() if v}
    # The tiny trace has cold and partial blocks everywhere, evictions at the small pool.
    assert {"cold", "partial", "evicted"} <= seen
    lines = outcome.csv_text().splitlines()
    header = lines[0].split(",")
    # Every reason has a column; cpu_hit's stays empty without a CPU tier.
    assert [h for h in header if h.startswith("miss_blocks_")] == [
        f"miss_blocks_{k}" for k in CSV_MISS_KEYS]
    first = dict(zip(header, lines[1].split(",")))
    assert int(first["miss_blocks_evicted"]) == outcome.point_pairs()[0][1].reasons.evicted
