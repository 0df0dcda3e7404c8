"""A lesson file: TOML (tomllib, standard library), one lesson a file.

The format is documented in traces/lessons/README.md. In short: top-level keys name the
lesson, its trace (a path relative to the lesson file) and the block manager's settings;
each ``[[step]]`` table moves the cursor to a replay step, says what to look at, lights up
cells by meaning, and may ask a question whose answer the record gives. Every mistake is
a LessonError naming the file and the line (tomllib's own line for syntax errors, the key's
line for a wrong value).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.backends import ENGINES, MODES, lookup
from engine.errors import UserError
from engine.lessons.answers import ANSWERS
from engine.lessons.highlight import HIGHLIGHTS
from engine.lessons.locate import KeyLines
from engine.hf_config import read_hf_config
from engine.settings import EngineSettings, KVLayout, ServeSettings, TierSettings

MAX_BYTES = 1 << 20  # a lesson is a page of text; anything bigger is not one


class LessonError(UserError):
    """``path:line: what is wrong``."""

    def __init__(self, path: Path | str, line: int, message: str) -> None:
        self.path, self.line, self.message = str(path), line, message
        super().__init__(f"{path}:{line}: {message}")


@dataclass(frozen=True)
class Question:
    text: str
    answer: str  # a key of engine.lessons.answers.ANSWERS: the record's figure
    expected: int  # what the author says the record holds (checked by the app and the tests)
    explain: str  # shown after the answer, right or wrong
    ask_at: int  # 1-based replay step shown while asking (default: the step before ``at``)
    request: str | None = None  # which request, where a step has several (serve)
    line: int = 0  # the line of ``expected``, for a wrong answer's message
    group: int | None = None  # the KV cache group, for the group_* answers (hf_config)


@dataclass(frozen=True)
class LessonStep:
    at: int  # 1-based replay step the cursor goes to (the reveal, for a question)
    text: str
    highlight: tuple[str, ...] = ()  # keys of engine.lessons.highlight.HIGHLIGHTS
    question: Question | None = None
    line: int = 0  # the [[step]] header's line, for messages


@dataclass(frozen=True)
class Lesson:
    path: Path
    title: str
    summary: str
    trace: Path
    engine: str
    mode: str
    settings: EngineSettings
    serve: ServeSettings | None
    steps: tuple[LessonStep, ...]


TOP_KEYS = {
    "title": str, "summary": str, "trace": str, "engine": str, "mode": str,
    "block_size": int, "num_blocks": int, "max_model_len": int, "enable_prefix_caching": bool,
    "max_num_seqs": int, "max_num_batched_tokens": int, "enable_chunked_prefill": bool,
    "async_scheduling": bool, "hf_config": str,
    "num_cpu_blocks": int, "cpu_eviction_policy": str, "offload_latency": int,
}
STEP_KEYS = {
    "at": int, "text": str, "highlight": list, "question": str, "answer": str,
    "expected": int, "explain": str, "ask_at": int, "request": str, "group": int,
}
REQUIRED_TOP = ("title", "trace", "block_size", "num_blocks")
SERVE_KEYS = ("max_num_seqs", "max_num_batched_tokens", "enable_chunked_prefill", "async_scheduling")
# vLLM's CPU offloading tier (serve mode): the lesson key -> TierSettings' field.
TIER_KEYS = {"num_cpu_blocks": "num_cpu_blocks", "cpu_eviction_policy": "eviction_policy",
             "offload_latency": "latency"}
QUESTION_KEYS = ("question", "answer", "expected", "explain")


def load_lesson(path: str | Path) -> Lesson:
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise LessonError(path, 1, f"larger than {MAX_BYTES:,} bytes: not a lesson file")
        raw = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise LessonError(path, line, "not UTF-8 text") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise _syntax_error(path, err) from None
    return _Builder(path, KeyLines(text)).lesson(doc)


def _syntax_error(path: Path, err: tomllib.TOMLDecodeError) -> LessonError:
    # tomllib's message ends "(at line L, column C)"; 3.14 also has err.lineno.
    msg = str(err)
    line = getattr(err, "lineno", None)
    if line is None and "(at line " in msg:
        head, _, where = msg.rpartition(" (at line ")
        try:
            line = int(where.split(",")[0])
            msg = head
        except ValueError:
            line = None
    elif line is not None:
        msg = getattr(err, "msg", msg)
    return LessonError(path, line or 1, f"not valid TOML: {msg}")


class _Builder:
    def __init__(self, path: Path, lines: KeyLines) -> None:
        self.path = path
        self.lines = lines

    def fail(self, message: str, key: str | None = None, step: int | None = None) -> LessonError:
        table = "step" if step is not None else None
        return LessonError(self.path, self.lines.line_of(key, table, step or 0), message)

    def check_keys(self, table: dict[str, Any], allowed: dict[str, type], step: int | None) -> None:
        where = f"step {step + 1}: " if step is not None else ""
        for key, value in table.items():
            kind = allowed.get(key)
            if kind is None:
                if step is None and key != "step":
                    raise self.fail(f"unknown key {key!r} (have: {', '.join(allowed)}, [[step]])",
                                    key, step)
                if step is not None:
                    raise self.fail(f"{where}unknown key {key!r} (have: {', '.join(allowed)})",
                                    key, step)
                continue
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise self.fail(f"{where}{key} must be {_KIND_NAMES[kind]} (got {value!r})",
                                key, step)

    def lesson(self, doc: dict[str, Any]) -> Lesson:
        self.check_keys(doc, TOP_KEYS, None)
        for key in REQUIRED_TOP:
            if key not in doc:
                raise self.fail(f"missing key {key!r}")
        engine, mode = doc.get("engine", "v1"), doc.get("mode", "sequential")
        if engine not in ENGINES:
            raise self.fail(f"engine must be one of {', '.join(ENGINES)} (got {engine!r})", "engine")
        if mode not in MODES:
            raise self.fail(f"mode must be one of {', '.join(MODES)} (got {mode!r})", "mode")
        try:
            entry = lookup(engine, mode)
        except UserError as err:
            raise self.fail(str(err), "mode") from None
        for key, least in (("block_size", 1), ("num_blocks", 2), ("max_model_len", 1),
                           ("max_num_seqs", 1), ("max_num_batched_tokens", 1)):
            if key in doc and doc[key] < least:
                # num_blocks: vLLM keeps block 0 as its null block.
                raise self.fail(f"{key} must be >= {least} (got {doc[key]})", key)
        layout = KVLayout()
        if "hf_config" in doc:
            config = self.path.parent / doc["hf_config"]
            try:
                layout = KVLayout(model=read_hf_config(config))
            except UserError as err:
                raise self.fail(f"hf_config: {err}", "hf_config") from None
        settings = EngineSettings(
            block_size=doc["block_size"], num_blocks=doc["num_blocks"],
            max_model_len=doc.get("max_model_len"),
            enable_caching=doc.get("enable_prefix_caching", True), layout=layout,
        )
        self.validated(settings.validate, "block_size")
        serve = None
        if entry.uses_scheduler:
            tier = TierSettings(**{f: doc[k] for k, f in TIER_KEYS.items() if k in doc})
            self.validated(tier.validate, next((k for k in TIER_KEYS if k in doc), None))
            if tier.enabled and "hf_config" in doc:
                raise self.fail("num_cpu_blocks: the CPU tier replays prefix-tui's own KV "
                                "layout, not with hf_config yet", "num_cpu_blocks")
            serve = ServeSettings(**{k: doc[k] for k in SERVE_KEYS if k in doc}, tier=tier)
            self.validated(serve.validate, next((k for k in SERVE_KEYS if k in doc), None))
        else:
            for key in (*SERVE_KEYS, *TIER_KEYS):
                if key in doc:
                    raise self.fail(f"{key} applies only to mode = \"serve\"", key)
        trace = (self.path.parent / doc["trace"])
        if not trace.is_file():
            raise self.fail(f"trace {doc['trace']!r} is not a file (looked for {trace})", "trace")
        raw_steps = doc.get("step", [])
        if not isinstance(raw_steps, list) or not raw_steps:
            raise self.fail("a lesson needs at least one [[step]] table")
        steps = tuple(self.step(raw, i) for i, raw in enumerate(raw_steps))
        return Lesson(self.path, doc["title"], doc.get("summary", ""), trace, engine, mode,
                      settings, serve, steps)

    def validated(self, check, key: str | None) -> None:  # noqa: ANN001 - a validate method
        try:
            check()
        except UserError as err:
            message = str(err)
            for flag, key_name in _FLAG_KEYS:
                message = message.replace(flag, key_name)
            raise self.fail(message, key) from None

    def step(self, raw: dict[str, Any], i: int) -> LessonStep:
        self.check_keys(raw, STEP_KEYS, i)
        header = self.lines.line_of(None, "step", i)
        for key in ("at", "text"):
            if key not in raw:
                raise self.fail(f"step {i + 1}: missing key {key!r}", None, i)
        at = raw["at"]
        if at < 1:
            raise self.fail(f"step {i + 1}: at must be >= 1 (replay steps start at 1; got {at})", "at", i)
        highlight = raw.get("highlight", [])
        for name in highlight:
            if name not in HIGHLIGHTS:
                raise self.fail(f"step {i + 1}: unknown highlight {name!r} "
                                f"(have: {', '.join(HIGHLIGHTS)})", "highlight", i)
        question = None
        given = [k for k in QUESTION_KEYS if k in raw]
        if given:
            missing = [k for k in QUESTION_KEYS if k not in raw]
            if missing:
                raise self.fail(f"step {i + 1}: a question needs {', '.join(QUESTION_KEYS)} "
                                f"(missing {', '.join(missing)})", given[0], i)
            if raw["answer"] not in ANSWERS:
                raise self.fail(f"step {i + 1}: unknown answer {raw['answer']!r} "
                                f"(have: {', '.join(ANSWERS)})", "answer", i)
            ask_at = raw.get("ask_at", at - 1)
            if not 1 <= ask_at <= at:
                raise self.fail(f"step {i + 1}: ask_at must be between 1 and at = {at} (got "
                                f"{ask_at}; without ask_at the question is asked at the step "
                                "before at)", "ask_at" if "ask_at" in raw else "at", i)
            if ANSWERS[raw["answer"]].needs_group and "group" not in raw:
                raise self.fail(f"step {i + 1}: answer {raw['answer']!r} needs group = N (the "
                                "KV cache group, 0-based)", "answer", i)
            question = Question(raw["question"], raw["answer"], raw["expected"], raw["explain"],
                                ask_at, raw.get("request"), self.lines.line_of("expected", "step", i),
                                raw.get("group"))
        else:
            for key in ("ask_at", "request", "group"):
                if key in raw:
                    raise self.fail(f"step {i + 1}: {key} belongs to a question", key, i)
        return LessonStep(at, raw["text"], tuple(highlight), question, header)


# The settings' messages name vLLM's flags; a lesson names its own keys.
_FLAG_KEYS = (("--num-gpu-blocks-override", "num_blocks"), ("--block-size", "block_size"),
              ("--max-model-len", "max_model_len"), ("--num-cpu-blocks", "num_cpu_blocks"),
              ("--cpu-eviction-policy", "cpu_eviction_policy"),
              ("--offload-latency", "offload_latency"))
_KIND_NAMES = {str: "a string", int: "a whole number", bool: "true or false",
               list: "a list of strings"}
