"""Replays: vLLM-free loops that drive an adapter and emit engine.model.StepRecords.

    protocol     the Backend protocol the registry hands out, and the Replay it makes
    common       what both replays share: record assembly, the one block-state classifier
    sequential   one request per step (KVCacheManager)
    serve        one vLLM scheduler iteration per step (Scheduler)
    steps        searching records (next arrival / finish)
    history      a cursor over records, both ways, from pool deltas
    pool_mirror  the replays' copy of vLLM's pool, to diff against
"""
