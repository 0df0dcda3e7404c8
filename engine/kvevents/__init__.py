"""vLLM's KV-cache event stream, vLLM-free: the export/publish settings (options), and the
live side (attach: a subscriber, the cache state it rebuilds). Encoding and decoding with
vLLM's own classes lives in the adapter (engine.backends.vllm_v1.kvstream)."""
