"""KV events: the export's overhead on a headless replay, and the events per second attach
keeps up with.

1. Export overhead: the headless replay (no detail, what `--headless` runs) of the first N
   requests of the Mooncake conversation trace, with and without --export-events, in this
   process, CPU time (time.process_time: the machine is shared), each side twice
   interleaved, the faster of each kept. Goal: <= 1.15x.
2. Attach: a publisher process hands the batches of that export to vLLM's own
   ZmqEventPublisher as fast as it can (its thread encodes and sends them), over ipc://;
   attach's Subscriber (vLLM's classes through msgspec, the CacheState) takes them in this
   process. Figures: events (hashes stored + removed) and batches per second from the
   first batch to the last, batches missed (vLLM's PUB drops past its high-water mark when
   the subscriber falls behind), and whether the counts equal the export's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONVERSATION = ROOT.parent / "shared" / "data" / "mooncake" / "conversation_trace.jsonl"

PUBLISHER = r"""
import sys, time, msgspec
from vllm.distributed.kv_events import KVEventBatch, ZmqEventPublisher
path, endpoint = sys.argv[1], sys.argv[2]
batches = [msgspec.json.decode(l, type=KVEventBatch) for l in open(path, "rb")]
pub = ZmqEventPublisher(0, endpoint=endpoint)
print("ready", flush=True)
import select
while not select.select([sys.stdin], [], [], 0.05)[0]:
    pub.publish(KVEventBatch(ts=-1.0, events=[]))  # probes until the subscriber has joined
sys.stdin.readline()
for b in batches:
    pub.publish(b)
pub.publish(KVEventBatch(ts=-2.0, events=[]))  # the end
pub.shutdown()
"""


def replay_seconds(trace: Path, limit: int, num_blocks: int, export: Path | None) -> float:
    from engine.backends import BuildOptions, lookup
    from engine.kvevents.options import EventsOut
    from engine.settings import EngineSettings
    from engine.trace.reader import TraceSource

    events = EventsOut(export_path=str(export)) if export is not None else None
    backend = lookup("v1", "sequential").build(
        BuildOptions(EngineSettings(num_blocks=num_blocks), events=events))
    requests = TraceSource(str(trace), max_requests=limit).reader()
    start = time.process_time()
    for _record in backend.replay(requests, detail=False):
        pass
    return time.process_time() - start


def attach_rate(export: Path, sock: Path) -> dict:
    from engine.backends import event_decoder
    from engine.kvevents.attach import AttachSettings, Subscriber
    from engine.kvevents.model import DecodedBatch
    from engine.kvevents.state import CacheState

    endpoint = f"ipc://{sock}"
    state = CacheState()
    decode = event_decoder()
    marks: dict[str, float] = {}
    real = [0]

    def timed(payload: bytes) -> DecodedBatch:
        batch = decode(payload)
        if batch.ts == -2.0:
            marks.setdefault("end", time.perf_counter())
        elif batch.ts is not None and batch.ts >= 0:
            marks.setdefault("first", time.perf_counter())
            real[0] += 1
        return batch

    sub = Subscriber(AttachSettings(endpoint, history=False), timed, state)
    sub.open()
    env = dict(os.environ, VLLM_LOGGING_LEVEL="ERROR")
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(export), endpoint],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready"
        while not sub.poll(0.1):  # a probe: the subscription has reached the publisher
            pass
        proc.stdin.write("go\n")
        proc.stdin.flush()
        while "end" not in marks:
            if not sub.poll(5.0) and proc.poll() is not None:
                break
        proc.wait(60)
    finally:
        sub.close()
        if proc.poll() is None:
            proc.kill()
    seconds = marks.get("end", time.perf_counter()) - marks["first"]
    return {"seconds": seconds, "batches": real[0], "stored": state.stored,
            "removed": state.removed, "missed": state.missed_batches}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--trace", default=str(CONVERSATION))
    p.add_argument("--limit", type=int, default=300,
                   help="first N requests (300: 65 MB of JSON lines; the whole trace ~2.6 GB)")
    p.add_argument("--num-blocks", type=int, default=10_000)
    args = p.parse_args(argv)
    trace = Path(args.trace)
    if not trace.exists():
        print(f"skip: {trace} not present")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "events.jsonl"
        plain, export = [], []
        for _rep in range(3):  # interleaved; the fastest of each side (a shared machine)
            plain.append(replay_seconds(trace, args.limit, args.num_blocks, None))
            out.unlink(missing_ok=True)
            Path(f"{out}.meta.json").unlink(missing_ok=True)
            export.append(replay_seconds(trace, args.limit, args.num_blocks, out))
        meta = json.loads(Path(f"{out}.meta.json").read_text())
        size_mb = out.stat().st_size / 1e6
        ratio = min(export) / min(plain)
        paired = sorted(e / p for p, e in zip(plain, export))
        print(f"== KV events: {trace.name}, first {args.limit:,} requests, "
              f"{args.num_blocks:,} blocks; {meta['batches']:,} batches, "
              f"{meta['events']['stored']:,} stored / {meta['events']['removed']:,} removed "
              f"hashes, {size_mb:,.1f} MB of JSON lines")
        print(f"{'headless replay, CPU s':28}{'plain':>10}{'--export':>10}{'ratio':>8}  goal")
        print(f"{'':28}{min(plain):>10.1f}{min(export):>10.1f}{ratio:>7.2f}x  <= 1.15x "
              f"{'ok' if ratio <= 1.15 else 'MISSED'}")
        print(f"  each pair (plain, export): "
              f"{', '.join(f'{p:.1f}/{e:.1f}' for p, e in zip(plain, export))}; "
              f"pair ratios {paired[0]:.2f}x..{paired[-1]:.2f}x")
        a = attach_rate(out, Path(tmp) / "pub.sock")
        events = a["stored"] + a["removed"]
        same = (a["batches"], a["stored"], a["removed"]) == (
            meta["batches"], meta["events"]["stored"], meta["events"]["removed"])
        print(f"attach, vLLM's ZmqEventPublisher flat out over ipc: {events / a['seconds']:,.0f} "
              f"events/s ({a['batches'] / a['seconds']:,.0f} batches/s, {events:,} events in "
              f"{a['seconds']:.1f} s wall), missed {a['missed']:,} batches; counts equal the "
              f"export's: {'yes' if same else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
