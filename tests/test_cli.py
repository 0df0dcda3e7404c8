"""The command line as a user runs it: report, JSON contract, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tui.cli import main

ROOT = Path(__file__).resolve().parents[1]
MULTI = str(ROOT / "traces" / "multi_turn.jsonl")
SINGLE = str(ROOT / "traces" / "single_turn.jsonl")


def test_headless_report_and_json_contract(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main([MULTI, "--headless", "--json", str(out), "--num-gpu-blocks-override", "300"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "PREFIX SHARING METRICS (vLLM Real Block Manager)" in text
    assert "vLLM 0.33.0" in text and "Overall sharing fraction" in text
    doc = json.loads(out.read_text())
    assert {"settings", "totals", "requests"} <= set(doc)
    for key in ("requests", "tokens", "blocks", "blocks_reused", "blocks_new",
                "sharing_fraction", "avg_sharing_fraction", "hit_rate", "evictions",
                "not_fitted"):
        assert key in doc["totals"]
    t, rows = doc["totals"], doc["requests"]
    assert len(rows) == t["requests"] == 100
    for key in ("request_id", "prompt_tokens", "hit_tokens", "hit_blocks", "new_blocks",
                "evicted_blocks", "outcome"):
        assert key in rows[0]
    # Totals add up from the rows.
    assert sum(r["hit_blocks"] for r in rows) == t["blocks_reused"]
    assert sum(r["prompt_tokens"] for r in rows) == t["tokens"]
    assert sum(r["evicted_blocks"] for r in rows) == t["evictions"] > 0
    assert t["blocks_reused"] + t["blocks_new"] == t["blocks"]
    assert t["sharing_fraction"] == pytest.approx(t["blocks_reused"] / t["blocks"])
    assert t["hit_rate"] == pytest.approx(sum(r["hit_tokens"] for r in rows) / t["tokens"])
    assert doc["settings"]["num_gpu_blocks"] == 300 and doc["status"]["state"] == "complete"


def test_json_is_not_clobbered_without_force(tmp_path, capsys):
    out = tmp_path / "r.json"
    out.write_text("precious")
    rc = main([MULTI, "--headless", "--json", str(out)])
    assert rc == 2 and out.read_text() == "precious"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists; pass --force" in err[0]


def test_bad_line_is_one_line_with_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt_token_ids": [1, 2, 3]}\n{"prompt_token_ids": "oops"}\n')
    rc = main([str(bad), "--headless"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].endswith("bad.jsonl:2: prompt_token_ids must be a list of ints (got str)")
    assert "Traceback" not in "\n".join(err)


def test_missing_trace_and_bad_flags(tmp_path, capsys):
    assert main([str(tmp_path / "nope.jsonl"), "--headless"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main([MULTI, "--headless", "--block-size", "0"]) == 2
    assert "--block-size must be >= 1" in capsys.readouterr().err
    assert main([MULTI, "--json", "x.json"]) == 2
    assert "--json goes with --headless" in capsys.readouterr().err


def test_compare_prints_both_and_their_ratio(capsys):
    rc = main(["compare", MULTI, SINGLE])
    text = capsys.readouterr().out
    assert rc == 0
    assert "Overall sharing fraction" in text and "×" in text


def test_ctrl_c_stops_cleanly_with_partial_results(tmp_path, monkeypatch, capsys):
    """Ctrl-C in the middle of a replay: exit 130, the report and a partial JSON. The
    interrupt is raised in-process at the 50th request (where a Ctrl-C lands as
    KeyboardInterrupt in the replay loop), so the test is about behaviour, not about
    how long vLLM takes to load on a cold machine."""
    import engine.trace.reader as reader_mod
    from tui.cli import main

    trace = tmp_path / "long.jsonl"
    with trace.open("w") as fh:
        for i in range(200):
            fh.write(json.dumps({"prompt_token_ids": [i % 97] * 40}) + "\n")
    real_iter = reader_mod.TraceReader.__iter__

    def interrupted(self):
        for req in real_iter(self):
            if req.index == 50:
                raise KeyboardInterrupt
            yield req

    monkeypatch.setattr(reader_mod.TraceReader, "__iter__", interrupted)
    out = tmp_path / "partial.json"
    code = main([str(trace), "--headless", "--no-progress", "--json", str(out)])
    cap = capsys.readouterr()
    assert code == 130
    assert "Traceback" not in cap.err
    assert cap.err.strip().splitlines()[-1] == (
        "prefix-tui: interrupted after 50 steps; partial results above")
    doc = json.loads(out.read_text())
    assert doc["status"]["state"] == "interrupted"
    assert doc["totals"]["requests"] == len(doc["requests"]) == 50
    assert "PREFIX SHARING METRICS" in cap.out


def _drain(fd: int, timeout: float) -> bytes | None:
    """What the pty has for us within timeout seconds: None if nothing yet, b"" once the
    child closed it."""
    import select

    if not select.select([fd], [], [], timeout)[0]:
        return None
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: every writer closed the pty
        return b""


def test_real_sigint_mid_replay_stops_cleanly(tmp_path):
    """The same, end to end: a real SIGINT to a real process with vLLM loaded (vLLM must
    not swallow it, and the CLI's own handler must turn it into KeyboardInterrupt).

    No fixed sleep: the signal is sent once the replay is observably under way. stderr is
    a pty, so the headless progress bar (TTY-only) is drawn there; its "N requests" column
    is first non-zero after the 64th request has been replayed by vLLM, i.e. after vLLM
    loaded, whatever the machine's speed. A deadline only bounds a hung run."""
    import fcntl
    import pty
    import re
    import struct
    import termios

    trace = tmp_path / "long.jsonl"
    with trace.open("w") as fh:
        for i in range(100_000):
            fh.write(json.dumps({"prompt_token_ids": [i % 97] * 40}) + "\n")
    out = tmp_path / "partial.json"
    try:
        master, slave = pty.openpty()
    except OSError as err:  # a sandbox without /dev/ptmx
        pytest.skip(f"no pty: {err}")
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = {k: v for k, v in os.environ.items()
           if k not in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR", "NO_COLOR")}
    env["TERM"] = "xterm-256color"  # not "dumb": rich draws the live bar
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", str(trace), "--headless", "--json", str(out)],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env,
    )
    os.close(slave)
    err = b""
    try:
        deadline = time.monotonic() + 300
        started = re.compile(rb"\b([1-9][0-9]*) requests")
        while not started.search(err):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"replay never seen under way (rc={proc.poll()}):\n"
                            f"{err.decode(errors='replace')}")
            err += _drain(master, 1.0) or b""
        proc.send_signal(signal.SIGINT)
        # Keep reading the pty so a full one never blocks the child, until it closes.
        deadline = time.monotonic() + 120
        while (chunk := _drain(master, 1.0)) != b"" and time.monotonic() < deadline:
            err += chunk or b""
        stdout = proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = err.decode(errors="replace")
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    assert re.search(r"prefix-tui: interrupted after \d+ steps; partial results above", text)
    doc = json.loads(out.read_text())
    assert doc["status"]["state"] == "interrupted"
    assert 64 <= doc["totals"]["requests"] == len(doc["requests"]) < 100_000
    assert "PREFIX SHARING METRICS" in stdout


def test_quiet_by_default_and_verbose_lets_logs_through(tmp_path):
    """vLLM's and torch's import-time log lines must not spill into the report."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VLLM_", "TORCH_"))}
    run = subprocess.run([sys.executable, "-m", "tui", SINGLE, "--headless"], cwd=ROOT,
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0
    # What matters: no vLLM or torch log line and no traceback (a harmless Python
    # warning from some import elsewhere must not fail this).
    assert "Traceback" not in run.stderr
    assert not [ln for ln in run.stderr.splitlines() if "vllm" in ln.lower() or "torch" in ln]
    assert "PREFIX SHARING METRICS" in run.stdout
    assert "WARNING" not in run.stdout and "W11" not in run.stdout
    loud = subprocess.run([sys.executable, "-m", "tui", SINGLE, "--headless", "--verbose"],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert loud.returncode == 0 and loud.stderr != ""
