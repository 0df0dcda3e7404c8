"""The command line on every kind of bad input, as a user meets it: `prefix-tui TRACE --headless`.

The table ``CASES`` is the documentation: for each case, the input, the exit code, and how the
run ends. A *stop* case prints exactly one line on stderr, ``prefix-tui: FILE:LINE: what is
wrong`` (``FILE: what`` when no line is to blame), and never a traceback. A *continue* case
replays to the end (exit 0) and the per-request outcomes are read back from ``--json``.

Then: a vLLM failure injected mid-replay (exit 1, partial results), an adapter mismatch
(exit 2, one line naming the vLLM version), and hostile text (Rich markup, ANSI/OSC escapes,
right-to-left and zero-width characters, very long lines) in ids, prompts and file names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

import engine.backends.vllm_v1.manager
from engine.backends.vllm_v1.imports import TESTED_VLLM_VERSION, import_vllm
from engine.backends.vllm_v1.manager import V1Manager
from tui.cli import main

GOOD = b'{"prompt_token_ids": [1, 2, 3]}\n'
MOON = b'{"timestamp": 0, "input_length": 600, "output_length": 1, "hash_ids": [0, 1]}\n'
MISSING, DIRECTORY = "<missing file>", "<a directory>"


@dataclass(frozen=True)
class Case:
    id: str
    input: bytes | str  # file content, or MISSING / DIRECTORY
    code: int  # exit code
    message: str = ""  # stop: the stderr line after "prefix-tui: FILE"; continue: ""
    outcomes: tuple[str, ...] = ()  # continue: the per-request outcomes in --json
    args: tuple[str, ...] = ()
    not_fitted: int = 0  # continue: totals.not_fitted

    @property
    def ends(self) -> str:
        return "stop" if self.code else "continue"


def ids(n: int) -> bytes:
    return json.dumps(list(range(n))).encode()


CASES = [
    # --- JSON itself ---------------------------------------------------------------------
    Case("invalid-json", GOOD + b'{"prompt_token_ids": [1, 2\n', 2,
         ":2: invalid JSON: Expecting ',' delimiter (column 27)"),
    Case("invalid-json-on-line-1", b"{nope}\n" + GOOD, 2,
         ":1: invalid JSON: Expecting property name enclosed in double quotes (column 2)"),
    Case("trailing-garbage", GOOD + b'{"prompt_token_ids": [1]} x\n', 2,
         ":2: invalid JSON: Extra data (column 27)"),
    Case("not-an-object", GOOD + b"[1, 2, 3]\n", 2, ":2: expected a JSON object, got list"),
    Case("a-bare-string", GOOD + b'"hello"\n', 2, ":2: expected a JSON object, got str"),
    Case("a-json-array", b'[{"prompt_token_ids": [1]}, {"prompt_token_ids": [2]}]\n', 2,
         ":1: expected a JSON object, got list; this looks like a JSON array: prefix-tui "
         "reads JSON Lines, one JSON object a line"),
    Case("a-json-array-over-lines", b'[\n{"prompt_token_ids": [1]},\n]\n', 2,
         ":1: invalid JSON: Expecting value (column 2); this looks like a JSON array: "
         "prefix-tui reads JSON Lines, one JSON object a line"),
    Case("nan", GOOD + b'{"prompt_token_ids": [1], "arrival_time": NaN}\n', 2,
         ":2: invalid JSON: NaN is not valid JSON"),
    Case("duplicate-key", GOOD + b'{"prompt_token_ids": [1], "prompt_token_ids": [2]}\n', 2,
         ":2: duplicate field 'prompt_token_ids'"),
    Case("nested-too-deeply", GOOD + b"[" * 100_000 + b"]" * 100_000 + b"\n", 2,
         ":2: invalid JSON: nested too deeply"),
    # --- types and fields ---------------------------------------------------------------------
    Case("wrong-type-prompt", GOOD + b'{"prompt_token_ids": "1 2 3"}\n', 2,
         ":2: prompt_token_ids must be a list of ints (got str)"),
    Case("wrong-type-token", GOOD + b'{"prompt_token_ids": [1, 2.0]}\n', 2,
         ":2: prompt_token_ids must be a list of ints (item 1 is float)"),
    Case("wrong-type-arrival", GOOD + b'{"prompt_token_ids": [1], "arrival_time": "soon"}\n', 2,
         ":2: arrival_time must be a number of seconds (got str)"),
    Case("wrong-type-output-len", GOOD + b'{"prompt_token_ids": [1], "output_len": true}\n', 2,
         ":2: output_len must be an int (got bool)"),
    Case("missing-prompt", GOOD + b'{"request_id": "a", "output_len": 3}\n', 2,
         ":2: missing prompt: give one of prompt_token_ids, prompt, messages"),
    Case("two-prompts", GOOD + b'{"prompt_token_ids": [1], "prompt": "hi"}\n', 2,
         ":2: give exactly one of prompt_token_ids, prompt, messages (got prompt_token_ids and prompt)"),
    Case("unknown-field", GOOD + b'{"prompt_token_ids": [1], "promt": "x"}\n', 2,
         ":2: unknown field 'promt'"),
    Case("empty-prompt", GOOD + b'{"prompt_token_ids": []}\n', 2,
         ":2: prompt_token_ids must not be empty"),
    Case("unpaired-surrogate", GOOD + b'{"prompt": "\\ud800"}\n', 2,
         ":2: prompt contains an unpaired surrogate escape at character 0"),
    # --- numbers ---------------------------------------------------------------------------
    Case("negative-token-id", GOOD + b'{"prompt_token_ids": [5, -1]}\n', 2,
         ":2: prompt_token_ids[1] = -1 is out of range (token ids must be >= 0 and < 2**31)"),
    Case("negative-output-len", GOOD + b'{"prompt_token_ids": [1], "output_len": -1}\n', 2,
         ":2: output_len must be between 0 and 10000000 (got -1)"),
    Case("negative-arrival-time", GOOD + b'{"prompt_token_ids": [1], "arrival_time": -0.5}\n', 2,
         ":2: arrival_time must be finite and >= 0 (got -0.5)"),
    Case("huge-token-id", GOOD + b'{"prompt_token_ids": [2147483648]}\n', 2,
         ":2: prompt_token_ids[0] = 2147483648 is out of range (token ids must be >= 0 and < 2**31)"),
    Case("huge-output-len", GOOD + b'{"prompt_token_ids": [1], "output_len": 1000000000000}\n', 2,
         ":2: output_len must be between 0 and 10000000 (got 1000000000000)"),
    Case("huge-arrival-time", GOOD + b'{"prompt_token_ids": [1], "arrival_time": 1e400}\n', 2,
         ":2: arrival_time must be finite and >= 0 (got inf)"),
    Case("number-with-5000-digits", GOOD + b'{"prompt_token_ids": [' + b"7" * 5000 + b"]}\n", 2,
         ":2: invalid JSON: a number has too many digits"),
    # Token ids are plain ints to vLLM: an id past GPT-2's 50,257 is accepted and replayed.
    Case("token-id-outside-vocabulary", GOOD + b'{"prompt_token_ids": [50257, 99999, 2147483647]}\n',
         0, outcomes=("ok", "ok")),
    # --- bytes and lines -------------------------------------------------------------------
    Case("non-utf8", GOOD + b'{"prompt": "caf\xe9"}\n', 2, ":2: not valid UTF-8 (byte 0xe9 at column 16)"),
    Case("non-utf8-first-line", b"\xff\xfe{}\n", 2, ":1: not valid UTF-8 (byte 0xff at column 1)"),
    Case("utf8-bom-at-start", b"\xef\xbb\xbf" + GOOD + GOOD.replace(b"3]", b"4]"), 0, outcomes=("ok", "ok")),
    Case("utf8-bom-on-line-2", GOOD + b"\xef\xbb\xbf" + GOOD, 2,
         ":2: byte-order mark (BOM) is allowed only at the start of the file"),
    Case("crlf-line-ends", GOOD.replace(b"\n", b"\r\n") * 2 + b'{"prompt": "hi"}\r\n', 0,
         outcomes=("ok", "ok", "ok")),
    Case("blank-lines", b"\n  \n" + GOOD + b"\r\n\t\n" + GOOD + b"\n\n", 0, outcomes=("ok", "ok")),
    Case("blank-lines-count-in-line-numbers", GOOD + b"\n\n" + b"oops\n", 2,
         ":4: invalid JSON: Expecting value (column 1)"),
    Case("empty-file", b"", 2, ": no requests (the file is empty)"),
    Case("only-blank-lines", b"\n \r\n\t\n", 2, ": no requests (the file is empty)"),
    Case("missing-file", MISSING, 2, ": no such file"),
    Case("directory", DIRECTORY, 2, ": is a directory, not a trace file"),
    # --- requests vLLM cannot hold: the replay goes on ----------------------------------------
    Case("prompt-longer-than-max-model-len", b'{"prompt_token_ids": ' + ids(20) + b"}\n" + GOOD, 0,
         outcomes=("too_long", "ok"), args=("--max-model-len", "16"), not_fitted=1),
    Case("request-larger-than-the-pool", b'{"prompt_token_ids": ' + ids(100) + b"}\n" + GOOD, 0,
         outcomes=("not_fitted", "ok"),
         args=("--num-gpu-blocks-override", "4", "--max-model-len", "1000"), not_fitted=1),
    # --- Mooncake ----------------------------------------------------------------------------
    Case("mooncake-hash-ids-too-few", MOON + b'{"timestamp": 1, "input_length": 600, '
         b'"output_length": 1, "hash_ids": [0]}\n', 2,
         ":2: hash_ids has 1 ids but input_length 600 needs ceil(600/512) = 2 (trace block size 512)"),
    Case("mooncake-hash-ids-too-many", MOON + b'{"timestamp": 1, "input_length": 512, '
         b'"output_length": 1, "hash_ids": [0, 1]}\n', 2,
         ":2: hash_ids has 2 ids but input_length 512 needs ceil(512/512) = 1 (trace block size 512)"),
    Case("mooncake-missing-field", MOON + b'{"timestamp": 1, "input_length": 5, "hash_ids": [0]}\n', 2,
         ":2: missing field 'output_length' (Mooncake format)"),
    Case("mooncake-then-native-line", MOON + GOOD, 2,
         ":2: missing field 'timestamp' (Mooncake format; 'prompt_token_ids' is a native field: "
         "Mooncake and native lines cannot mix)"),
    Case("native-then-mooncake-line", GOOD + MOON, 2,
         ":2: unknown field 'timestamp' (a Mooncake field; Mooncake and native lines cannot mix)"),
    # --- ids and time ------------------------------------------------------------------------
    Case("duplicate-request-id", b'{"request_id": "a", "prompt_token_ids": [1]}\n'
         b'{"request_id": "b", "prompt_token_ids": [2]}\n'
         b'{"request_id": "a", "prompt_token_ids": [3]}\n', 2,
         ":3: duplicate request_id 'a' (first on line 1)"),
    # Arrival order is the file's order; times are shown, never sorted or checked.
    Case("arrival-times-going-backwards", b'{"prompt_token_ids": [1], "arrival_time": 5}\n'
         b'{"prompt_token_ids": [2], "arrival_time": 1}\n'
         b'{"prompt_token_ids": [3], "arrival_time": 0}\n', 0, outcomes=("ok", "ok", "ok")),
    Case("mooncake-timestamps-going-backwards",
         MOON.replace(b'"timestamp": 0', b'"timestamp": 900') + MOON, 0, outcomes=("ok", "ok")),
]


@pytest.fixture(scope="module", autouse=True)
def _vllm_imported():
    import_vllm()  # once, before any output is captured


def trace_path(tmp_path: Path, data: bytes | str, name: str = "trace.jsonl") -> Path:
    if data == MISSING:
        return tmp_path / "no-such-trace.jsonl"
    if data == DIRECTORY:
        return tmp_path
    p = tmp_path / name  # a "/" in name makes a directory: the path string keeps "[/]"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(tmp_path, capsys, case: Case):
    path = trace_path(tmp_path, case.input)
    out = tmp_path / "out.json"
    argv = [str(path), "--headless", "--no-progress", *case.args]
    if case.ends == "continue":
        argv += ["--json", str(out)]
    code = main(argv)
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert "Traceback" not in cap.err + cap.out
    assert code == case.code, cap.err
    if case.ends == "stop":
        assert err == [f"prefix-tui: {path}{case.message}"]
        return
    assert err == [f"wrote {out}"]
    doc = json.loads(out.read_text())
    assert doc["status"]["state"] == "complete"
    assert tuple(r["outcome"] for r in doc["requests"]) == case.outcomes
    assert doc["totals"]["not_fitted"] == case.not_fitted
    assert doc["totals"]["requests"] == len(case.outcomes)


def test_stop_mid_trace_keeps_the_partial_results(tmp_path, capsys):
    path = trace_path(tmp_path, GOOD * 3 + b'{"prompt_token_ids": "oops"}\n' + GOOD)
    out = tmp_path / "partial.json"
    assert main([str(path), "--headless", "--no-progress", "--json", str(out)]) == 2
    cap = capsys.readouterr()
    assert cap.err.strip().splitlines()[-1] == (
        f"prefix-tui: {path}:4: prompt_token_ids must be a list of ints (got str)")
    assert "Traceback" not in cap.err
    assert "stopped early (bad_input)" in cap.out
    doc = json.loads(out.read_text())
    assert doc["status"]["state"] == "bad_input"
    assert doc["totals"]["requests"] == len(doc["requests"]) == 3


def test_request_larger_than_the_pool_report_says_not_fitted(tmp_path, capsys):
    path = trace_path(tmp_path, b'{"prompt_token_ids": ' + ids(100) + b"}\n" + GOOD)
    code = main([str(path), "--headless", "--no-progress", "--num-gpu-blocks-override", "4",
                 "--max-model-len", "1000"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Requests not fitted" in out
    line = next(ln for ln in out.splitlines() if "Requests not fitted" in ln)
    assert line.rstrip(" │|").split()[-1] == "1"


def test_output_running_past_max_model_len_is_truncated_not_a_vllm_error(tmp_path, capsys):
    path = trace_path(tmp_path, b'{"prompt_token_ids": [0, 1, 2, 3, 4, 5], "output_len": 10}\n' + GOOD)
    out = tmp_path / "r.json"
    code = main([str(path), "--headless", "--no-progress", "--block-size", "4",
                 "--max-model-len", "8", "--json", str(out)])
    capsys.readouterr()
    assert code == 0
    doc = json.loads(out.read_text())
    assert [r["outcome"] for r in doc["requests"]] == ["truncated", "ok"]
    assert doc["requests"][0]["prompt_tokens"] + doc["requests"][0]["output_tokens"] <= 8


# =========================================================================================
# vLLM failing under the replay, and an adapter that no longer matches vLLM
# =========================================================================================


def _fail_on_third_call(real):
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected failure\nsecond line of the message")
        return real(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("target", ["adapter", "vllm"], ids=["V1Manager.allocate", "KVCacheManager.allocate_slots"])
def test_vllm_failure_mid_replay(tmp_path, capsys, monkeypatch, target):
    if target == "adapter":
        monkeypatch.setattr(V1Manager, "allocate", _fail_on_third_call(V1Manager.allocate))
    else:
        from vllm.v1.core.kv_cache_manager import KVCacheManager

        monkeypatch.setattr(KVCacheManager, "allocate_slots",
                            _fail_on_third_call(KVCacheManager.allocate_slots))
    path = trace_path(tmp_path, b"".join(b'{"prompt_token_ids": [%d, 1, 2, 3, 4]}\n' % i
                                         for i in range(6)))
    out = tmp_path / "partial.json"
    code = main([str(path), "--headless", "--no-progress", "--json", str(out)])
    cap = capsys.readouterr()
    assert code == 1
    err = cap.err.strip().splitlines()
    assert err == [f"wrote {out}", "prefix-tui: step 2: RuntimeError inside vLLM: injected failure"]
    assert "Traceback" not in cap.err + cap.out
    assert "stopped early (vllm_error)" in cap.out
    doc = json.loads(out.read_text())
    assert doc["status"]["state"] == "vllm_error"
    assert doc["status"]["message"] == "step 2: RuntimeError inside vLLM: injected failure"
    assert [r["outcome"] for r in doc["requests"]] == ["ok", "ok", "error"]
    assert doc["totals"]["requests"] == 3 and doc["totals"]["errors"] == 1


def test_adapter_mismatch_is_one_line_naming_the_vllm_version(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(engine.backends.vllm_v1.manager, "check_manager",
                        lambda manager: ["KVCacheBlock.ref_cnt is not an int"])
    path = trace_path(tmp_path, GOOD)
    out = tmp_path / "r.json"
    code = main([str(path), "--headless", "--no-progress", "--json", str(out)])
    cap = capsys.readouterr()
    assert code == 2
    assert cap.err.strip().splitlines() == [
        f"prefix-tui: vLLM {TESTED_VLLM_VERSION}'s KV-cache manager differs from what "
        f"prefix-tui's adapter knows "
        f"(tested with {TESTED_VLLM_VERSION}): KVCacheBlock.ref_cnt is not an int"
    ]
    assert "Traceback" not in cap.err + cap.out
    assert not out.exists()  # nothing was replayed


# =========================================================================================
# Hostile text: untrusted ids, prompts and paths are shown literally and never reach the
# terminal as escape sequences
# =========================================================================================

HOSTILE = [
    "[bold red]x[/]",  # Rich markup
    "\x1b[31mred\x1b[0m",  # ANSI colour
    "\x1b]0;pwned title\x07",  # OSC: set the terminal title
    "\u202eevil\u202c",  # right-to-left override
    "zero\u200bwidth\u200d\ufeff",  # zero-width space / joiner, BOM as a character
    "bell\x07 back\x08 cr\r nul-free",
]


def test_hostile_ids_and_prompts_are_exported_literally(tmp_path, capsys):
    lines = []
    for i, s in enumerate(HOSTILE):
        lines.append({"request_id": f"{i}:{s}", "prompt": f"say {s}", "conversation_id": s,
                      "output": s})
        lines.append({"request_id": f"m{i}:{s}", "messages": [{"role": s, "content": s}]})
    lines.append({"request_id": "long-" + "x" * 20_000, "prompt_token_ids": list(range(100_000))})
    path = trace_path(tmp_path, "".join(json.dumps(obj) + "\n" for obj in lines).encode())
    out = tmp_path / "r.json"
    code = main([str(path), "--headless", "--no-progress", "--json", str(out)])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert "\x1b" not in cap.out and "\x07" not in cap.out
    assert "Traceback" not in cap.err + cap.out
    raw = out.read_text(encoding="utf-8")
    assert "\x1b" not in raw and "\x07" not in raw and "\u202e" not in raw  # escaped as \\uXXXX
    doc = json.loads(raw)
    assert [r["request_id"] for r in doc["requests"]] == [o["request_id"] for o in lines]
    assert [r["conversation_id"] for r in doc["requests"][:-1:2]] == HOSTILE
    assert doc["requests"][-1]["prompt_tokens"] == 100_000
    assert [r["outcome"] for r in doc["requests"]] == ["ok"] * len(lines)


def test_hostile_duplicate_id_error_is_one_escaped_line(tmp_path, capsys):
    rid = HOSTILE[1] + HOSTILE[2] + "\n[bold]x[/]"
    line = json.dumps({"request_id": rid, "prompt_token_ids": [1]}).encode() + b"\n"
    path = trace_path(tmp_path, line * 2)
    assert main([str(path), "--headless", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"prefix-tui: {path}:2: duplicate request_id {rid!r} (first on line 1)"]
    assert "\x1b" not in err and "\x07" not in err


HOSTILE_NAME = "[bold red]x[/] \x1b[31mred\x1b]0;title\x07 \u202eevil.jsonl"


def test_hostile_file_name_markup_is_shown_literally(tmp_path, capsys):
    path = trace_path(tmp_path, GOOD, name="[bold red]x[/] \u202eevil\u200b.jsonl")
    assert "[bold red]x[/]" in str(path)
    assert main([str(path), "--headless", "--no-progress", "--json", str(tmp_path / "r.json")]) == 0
    cap = capsys.readouterr()
    assert "[bold red]x[/]" in cap.out.replace("\n", "")  # markup printed as text, not interpreted
    # A bidi override would make the name read differently from what it is: neutralized.
    assert "\u202e" not in cap.out and "evil" in cap.out
    assert cap.err.strip().splitlines() == [f"wrote {tmp_path / 'r.json'}"]


def test_hostile_file_name_never_emits_escape_codes_to_stdout(tmp_path, capsys):
    path = trace_path(tmp_path, GOOD, name=HOSTILE_NAME)
    assert main([str(path), "--headless", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out


def test_hostile_file_name_never_emits_escape_codes_to_stderr(tmp_path, capsys):
    path = trace_path(tmp_path, GOOD + b"oops\n", name=HOSTILE_NAME)
    assert main([str(path), "--headless", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "\x1b" not in err and "\x07" not in err
