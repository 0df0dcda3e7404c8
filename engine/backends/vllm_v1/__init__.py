"""The vLLM 0.33 adapter: the only package that imports vLLM.

    imports     the lazy import of vLLM (slow) and its names
    internals   every read of a vLLM attribute that is not public API, and its checks
    kv_config   the KVCacheConfig both backends hand vLLM (from engine.settings.KVLayout)
    events      vLLM's KV events -> engine.model.KVEvent
    stats       vLLM's PrefixCacheStats and CachingMetrics window, summed
    manager     V1Manager: one KVCacheManager, driven as the scheduler drives it
    serve_config / scheduler   V1Scheduler: vLLM's real Scheduler and the engine-core loop
"""
