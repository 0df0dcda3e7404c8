"""vLLM 0.10.1.1's V0 block manager, in its own interpreter (.venv-legacy).

    client      main process: finds .venv-legacy, spawns the worker, streams records back
                (never imports vLLM)
    wire        the messages both ends exchange (pickled engine.model records)
    worker      runs under vLLM 0.10.1.1: the whole replay loop, one record per request
    sequential  the replay: V0's scheduler call order or the original experiment's
    internals   every private V0 read, checked at start-up
"""
