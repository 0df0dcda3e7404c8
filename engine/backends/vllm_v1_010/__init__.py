"""prefix-tui's V1 adapter on vLLM 0.10.1.1's V1 (``--engine v1@0.10``), so one trace can be
compared across vLLM releases. It runs in the .venv-legacy worker process, as V0 does
(engine.backends.vllm_v0.client spawns it, its records stream back over the same pipe);
the replay is engine.replay.sequential's, the manager is the V1 adapter's own class with
the calls whose API differs in 0.10.1.1 bridged in ``manager``, each named there:

    client    main process: the backend and its replay over a worker (never imports vLLM)
    worker    runs under vLLM 0.10.1.1: the sequential replay, one record per request
    imports   fills the adapter's ``V`` with vLLM 0.10.1.1's names
    manager   V010Manager: the adapter's V1Manager, bridged to 0.10.1.1's API
"""
