"""Command-line settings shared by the inspector, the headless report and compare, and the
backend they select (engine.backends' registry)."""

from __future__ import annotations

import argparse

from engine.errors import UserError
from engine.backends import ENGINES, MODES, BackendEntry, BuildOptions, lookup
from engine.kvevents.options import events_out_from_args
from engine.trace import formats as trace_formats
from engine.tier_options import TIER_FLAGS, add_tier_arguments, tier_from_args
from engine.trace.reader import TraceSource
from engine.replay.routing import ROUTERS
from engine.settings import (
    DEFAULT_HASH_ALGO,
    DEFAULT_V0_HASH_SEED,
    HASH_ALGOS,
    V0_CALL_ORDERS,
    EngineSettings,
    ServeSettings,
    KVLayout,
    V0Settings,
)
from engine.hf_config import describe_layers, read_hf_config
from engine.model import KVGroupInfo


ROUTER_NAMES = tuple(ROUTERS)

SERVE_FLAGS = {  # serve-only flags: dest -> the flag as typed (warned about elsewhere)
    "max_num_seqs": "--max-num-seqs",
    "max_num_batched_tokens": "--max-num-batched-tokens",
    "enable_chunked_prefill": "--enable-chunked-prefill",
    "serve_iteration_time": "--serve-iteration-time",
    "async_scheduling": "--async-scheduling",
    "closed_loop": "--closed-loop",
    "think_time": "--think-time",
    **TIER_FLAGS,
}


def add_engine_arguments(parser: argparse.ArgumentParser, several_modes: bool = False) -> None:
    """``several_modes``: --mode (alias --modes) takes a comma-separated list (compare)."""
    g = parser.add_argument_group("vLLM block manager (names follow vLLM's own flags)")
    g.add_argument("--block-size", type=int, default=16, help="tokens per KV block (default 16)")
    g.add_argument(
        "--num-gpu-blocks-override", type=int, default=10000, metavar="N",
        help="blocks in vLLM's pool, its null block included (default 10000)",
    )
    g.add_argument(
        "--max-model-len", type=int, default=None,
        help="longest prompt accepted (default: whatever the pool can hold)",
    )
    g.add_argument(
        "--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=True,
        help="vLLM's automatic prefix caching (default on)",
    )
    g.add_argument(
        "--hf-config", default=None, metavar="PATH",
        help="a model's local HF config.json (or its folder): its KV cache groups as vLLM "
             "builds them (full, sliding window, chunked local); default one full-attention "
             "group",
    )
    g.add_argument(
        "--prefix-caching-hash-algo", choices=HASH_ALGOS, default=DEFAULT_HASH_ALGO,
        help=f"vLLM's block hash (default {DEFAULT_HASH_ALGO})",
    )
    t = parser.add_argument_group("trace")
    t.add_argument(
        "--tokenizer", default=None, metavar="NAME_OR_PATH",
        help="tokenizer for text prompts (local files only; default: GPT-2 BPE, as OPT)",
    )
    t.add_argument(
        "--trace-block-size", type=int, default=None,
        help="tokens per hash id in hash-id traces (default: Mooncake 512, Qwen-Bailian 16)",
    )
    t.add_argument(
        "--trace-format", choices=trace_formats.NAMES, default=trace_formats.AUTO,
        help="the trace's format (default auto: told by its first line)",
    )
    t.add_argument(
        "--chat-template", default="simple", metavar="simple|tokenizer|FILE.jinja",
        help="how `messages` become tokens: prefix-tui's plain template (default), the "
             "--tokenizer directory's own chat template, or a Jinja template file (sandboxed)",
    )
    t.add_argument(
        "--lora-names", default="", metavar="NAME[,NAME]",
        help="OpenAI request logs: model names that are LoRA adapters (a request for one "
             "runs under that adapter)",
    )
    t.add_argument(
        "--max-requests", type=int, default=None, metavar="N",
        help="replay only the first N requests of the trace (default: all)",
    )
    r = parser.add_argument_group("replicas behind a router (V1)")
    r.add_argument("--instances", type=int, default=None, metavar="N",
                   help="replay on N real vLLM engines, one per replica (default: one, "
                   "no router)")
    r.add_argument("--router", choices=ROUTER_NAMES, default=None,
                   help="with --instances: round-robin (default), session (by "
                   "conversation_id), prefix-aware (longest cached prefix, by vLLM's hashes), "
                   "prefix-bounded (prefix-aware within 1.25x the mean load)")
    r.add_argument("--replica", type=int, default=None, metavar="K",
                   help="with --instances, in the inspector: start on replica K (0-based, "
                   "default 0; r / R switch)")
    e = parser.add_argument_group("vLLM engine")
    engine_help = ("v1: vLLM 0.33's KV-cache manager (default); v0: vLLM 0.10.1.1's V0 block "
                   "manager in .venv-legacy (make legacy); v1@0.10: the V1 adapter on vLLM "
                   "0.10.1.1's V1, also in .venv-legacy")
    if several_modes:
        e.add_argument("--engine", "--engines", default="v1", metavar="ENGINES",
                       help=f"comma-separated, e.g. v0,v1 (per-request differences listed). "
                       f"{engine_help}")
    else:
        e.add_argument("--engine", choices=ENGINES, default="v1", help=engine_help)
    e.add_argument(
        "--v0-call-order", choices=V0_CALL_ORDERS, default="scheduler",
        help="v0: the calls V0's Scheduler makes (default), or the original experiment's "
        "allocate -> get_num_cached_tokens -> free",
    )
    e.add_argument(
        "--v0-hash-seed", type=int, default=DEFAULT_V0_HASH_SEED, metavar="N",
        help="v0: PYTHONHASHSEED of the V0 worker (V0 hashes blocks with hash(); default 0)",
    )
    m = parser.add_argument_group("replay mode")
    if several_modes:
        m.add_argument(
            "--mode", "--modes", dest="mode", default="sequential", metavar="MODE[,MODE]",
            help=f"replay modes, comma-separated ({', '.join(MODES)}; default sequential): "
                 "each trace is replayed in each",
        )
    else:
        m.add_argument(
            "--mode", choices=MODES, default="sequential",
            help="sequential: one request at a time (default); serve: vLLM's real Scheduler",
        )
    m.add_argument("--max-num-seqs", type=int, default=None, help="serve: vLLM's max_num_seqs")
    m.add_argument(
        "--max-num-batched-tokens", type=int, default=None,
        help="serve: vLLM's max_num_batched_tokens",
    )
    m.add_argument(
        "--enable-chunked-prefill", action=argparse.BooleanOptionalAction, default=None,
        help="serve: vLLM's chunked prefill (default as vLLM)",
    )
    m.add_argument(
        "--serve-iteration-time", type=float, default=None, metavar="SECONDS",
        help="serve: simulated time one scheduler iteration takes (default 0.02)",
    )
    m.add_argument(
        "--async-scheduling", action=argparse.BooleanOptionalAction, default=None,
        help="serve: vLLM's AsyncScheduler (default as vLLM)",
    )
    m.add_argument(
        "--closed-loop", action="store_true", default=None,
        help="serve: a conversation's next turn is sent once its previous turn finished, "
             "plus the trace's gap between them (default: at its trace time)",
    )
    m.add_argument(
        "--think-time", type=float, default=None, metavar="SECONDS",
        help="serve, with --closed-loop: this think time instead of the trace's gaps",
    )
    add_tier_arguments(m)
    parser.add_argument(
        "--verbose", action="store_true", help="let vLLM's and torch's log lines through"
    )


def unused_serve_flags(args: argparse.Namespace, modes: list[str]) -> list[str]:
    """Serve-only flags given while no run uses vLLM's scheduler (they would be ignored)."""
    if any(lookup("v1", m).uses_scheduler for m in modes):
        return []
    return [flag for dest, flag in SERVE_FLAGS.items() if getattr(args, dest, None) is not None]


def settings_from_args(args: argparse.Namespace) -> EngineSettings:
    hf_config = getattr(args, "hf_config", None)
    layout = KVLayout(model=read_hf_config(hf_config)) if hf_config else KVLayout()
    settings = EngineSettings(
        block_size=args.block_size,
        num_blocks=args.num_gpu_blocks_override,
        max_model_len=args.max_model_len,
        enable_caching=args.enable_prefix_caching,
        hash_algo=args.prefix_caching_hash_algo,
        layout=layout,
    )
    settings.validate()
    return settings


def serve_settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """ServeSettings from the serve flags (--max-num-seqs, ...)."""
    iteration = getattr(args, "serve_iteration_time", None)
    settings = ServeSettings(
        max_num_seqs=getattr(args, "max_num_seqs", None),
        max_num_batched_tokens=getattr(args, "max_num_batched_tokens", None),
        enable_chunked_prefill=getattr(args, "enable_chunked_prefill", None),
        async_scheduling=getattr(args, "async_scheduling", None),
        closed_loop=bool(getattr(args, "closed_loop", None)),
        think_time_s=getattr(args, "think_time", None),
        tier=tier_from_args(args),
        **({"iteration_time_s": iteration} if iteration is not None else {}),
    )
    settings.validate()
    return settings


def parse_engines(text: str) -> list[str]:
    """compare's --engines: a comma-separated list of the registry's engines."""
    engines = [e.strip() for e in text.split(",") if e.strip()]
    for e in engines:
        if e not in ENGINES:
            raise UserError(f"--engines: unknown engine {e!r} (have: {', '.join(ENGINES)})")
    if len(set(engines)) != len(engines):
        raise UserError(f"--engines: an engine given twice ({text})")
    return engines or ["v1"]


def v0_settings_from_args(args: argparse.Namespace) -> V0Settings:
    settings = V0Settings(
        call_order=getattr(args, "v0_call_order", None) or "scheduler",
        hash_seed=getattr(args, "v0_hash_seed", DEFAULT_V0_HASH_SEED),
    )
    settings.validate()
    return settings


def backend_from_args(args: argparse.Namespace, mode: str | None = None,
                      engine: str | None = None) -> tuple[BackendEntry, BuildOptions]:
    """The registry entry the flags select and what to build it with (validated: a bad
    flag, or a backend that cannot be built here, is one line before vLLM loads)."""
    entry = lookup(engine or getattr(args, "engine", None) or "v1",
                   mode or getattr(args, "mode", None) or "sequential")
    serve = serve_settings_from_args(args) if entry.uses_scheduler else None
    v0 = v0_settings_from_args(args) if entry.engine == "v0" else None
    trace = getattr(args, "trace", None)
    events = events_out_from_args(args, inputs=(trace,) if isinstance(trace, str) else ())
    if events is not None and not entry.kv_events:
        raise UserError(f"--export-events / --serve-events: {entry.name} emits no KV events")
    instances = getattr(args, "instances", None)
    router = getattr(args, "router", None)
    replica = getattr(args, "replica", None)
    if (router is not None or replica is not None) and instances is None:
        raise UserError(f"{'--router' if router is not None else '--replica'} goes with "
                        "--instances N")
    if instances is not None:
        if instances < 1:
            raise UserError(f"--instances must be >= 1 (got {instances})")
        if replica is not None and not 0 <= replica < instances:
            raise UserError(f"--replica must be 0 to {instances - 1} (got {replica})")
        if entry.engine != "v1":
            raise UserError("--instances: V1 only (V0 replays one block manager)")
        if serve is not None and serve.closed_loop:
            raise UserError("--closed-loop with --instances: not supported (a "
                            "conversation's turns may be on different replicas)")
        if events is not None:
            raise UserError("--export-events / --serve-events with --instances: not "
                            "supported (one event stream per replica)")
    options = BuildOptions(settings_from_args(args), serve, getattr(args, "verbose", False), v0,
                           events, instances=instances, router=router or "round-robin",
                           replica=replica)
    if entry.precheck is not None:
        entry.precheck()
    return entry, options


def trace_source_from_args(args: argparse.Namespace, path: str | None = None) -> TraceSource:
    """The trace flags as one TraceSource (``path``: another trace than args.trace, for
    compare)."""
    lora = tuple(n.strip() for n in (getattr(args, "lora_names", "") or "").split(",") if n.strip())
    return TraceSource(path if path is not None else args.trace, tokenizer_name=args.tokenizer,
                       trace_block_size=args.trace_block_size, max_requests=args.max_requests,
                       trace_format=getattr(args, "trace_format", trace_formats.AUTO),
                       lora_names=lora, chat_template=getattr(args, "chat_template", None))


def layout_dict(settings: EngineSettings, groups: tuple[KVGroupInfo, ...]) -> dict:
    """The --json settings' KV layout: the config it came from and vLLM's groups."""
    model = settings.layout.model
    out: dict = {"kv_cache_groups": [g._asdict() for g in groups]}
    if model is not None:
        out["hf_config"] = {
            "path": model.source, "model_type": model.model_type,
            "layers": describe_layers(model), "fields_used": list(model.fields_used),
            "notes": list(model.notes),
        }
    return out


def settings_dict(settings: EngineSettings, vllm_version: str,
                  groups: tuple[KVGroupInfo, ...] = (), **extra) -> dict:
    return {
        "vllm_version": vllm_version,
        "block_size": settings.block_size,
        "num_gpu_blocks": settings.num_blocks,
        "max_model_len": settings.effective_max_model_len,
        "enable_prefix_caching": settings.enable_caching,
        "prefix_caching_hash_algo": settings.hash_algo,
        **(layout_dict(settings, groups) if groups else {}),
        **extra,
    }
