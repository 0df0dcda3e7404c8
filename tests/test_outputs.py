"""What --json does to the user's files: nothing lost, nothing half-written, one line when it
cannot, and the trace's first line checked before vLLM loads (issue: what a new user hit)."""

from __future__ import annotations

import json
import os

import pytest

from tui.cli import main

GOOD = b'{"prompt_token_ids": [1, 2, 3, 4, 5]}\n{"prompt_token_ids": [1, 2, 3, 4, 6]}\n'


def _trace(tmp_path, data: bytes = GOOD):
    p = tmp_path / "t.jsonl"
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("force", [False, True])
def test_the_input_trace_is_never_the_output(tmp_path, capsys, force):
    trace = _trace(tmp_path)
    link = tmp_path / "link.jsonl"
    link.symlink_to(trace)
    for out in (trace, link):
        code = main([str(trace), "--headless", "--no-progress", "--json", str(out)]
                    + ["--force"] * force)
        err = capsys.readouterr().err
        assert code == 2 and "is the input trace" in err and "--force" not in err
    assert trace.read_bytes() == GOOD


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_an_unwritable_directory_fails_before_the_replay(tmp_path, capsys, monkeypatch):
    import engine.backends

    built = []
    monkeypatch.setattr(engine.backends.BackendEntry, "build", lambda self, o: built.append(o))
    code = main([str(_trace(tmp_path)), "--headless", "--no-progress", "--json",
                 "/proc/out.json"])
    cap = capsys.readouterr()
    assert code == 2 and built == []  # no replay ran
    assert cap.err.startswith("prefix-tui: /proc: cannot write there")
    assert "Traceback" not in cap.err + cap.out and len(cap.err.strip().splitlines()) == 1


def test_json_honours_the_umask(tmp_path, capsys):
    out = tmp_path / "r.json"
    old = os.umask(0o022)
    try:
        code = main([str(_trace(tmp_path)), "--headless", "--no-progress", "--json", str(out)])
    finally:
        os.umask(old)
    capsys.readouterr()
    assert code == 0 and json.loads(out.read_text())["totals"]["requests"] == 2
    assert out.stat().st_mode & 0o777 == 0o644


def test_a_bad_first_line_stops_before_vllm_loads(tmp_path, capsys, monkeypatch):
    import engine.backends

    built = []
    monkeypatch.setattr(engine.backends.BackendEntry, "build", lambda self, o: built.append(o))
    trace = _trace(tmp_path, b'{"prompt_token_ids": []}\n' + GOOD)
    out = tmp_path / "r.json"
    code = main([str(trace), "--headless", "--no-progress", "--json", str(out)])
    cap = capsys.readouterr()
    assert code == 2 and built == [] and not out.exists()
    assert cap.err.strip().splitlines()[-1].startswith(f"prefix-tui: {trace}:1:")
    assert cap.out == ""  # no all-zero report


def test_max_requests_replays_the_first_n_and_the_json_says_how_it_ran(tmp_path, capsys):
    lines = b"".join(b'{"prompt_token_ids": [%d, 2, 3, 4, 5]}\n' % i for i in range(1, 6))
    out = tmp_path / "r.json"
    code = main([str(_trace(tmp_path, lines)), "--headless", "--no-progress", "--json", str(out),
                 "--max-requests", "2", "--trace-block-size", "64"])
    capsys.readouterr()
    doc = json.loads(out.read_text())
    assert code == 0 and doc["totals"]["requests"] == len(doc["requests"]) == 2
    s = doc["settings"]
    assert s["trace"] == str(tmp_path / "t.jsonl") and s["max_requests"] == 2
    assert s["trace_block_size"] == 64 and s["tokenizer"] is None and s["serve"] is None


def test_serve_json_names_the_scheduler_knobs(tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main([str(_trace(tmp_path)), "--headless", "--no-progress", "--json", str(out),
                 "--mode", "serve", "--max-num-seqs", "3", "--no-async-scheduling"])
    capsys.readouterr()
    serve = json.loads(out.read_text())["settings"]["serve"]
    assert code == 0 and serve["max_num_seqs"] == 3 and serve["async_scheduling"] is False


def test_max_requests_below_one_is_one_line(tmp_path, capsys):
    code = main([str(_trace(tmp_path)), "--headless", "--no-progress", "--max-requests", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "--max-requests must be an int >= 1" in err and "Traceback" not in err


def test_caching_off_shows_no_hit_rate(tmp_path, capsys):
    code = main([str(_trace(tmp_path)), "--headless", "--no-progress",
                 "--no-enable-prefix-caching"])
    out = capsys.readouterr().out
    hit_lines = [ln for ln in out.splitlines() if "Hit rate" in ln or "Hit tokens" in ln]
    assert code == 0 and len(hit_lines) == 3
    assert all("n/a (caching off)" in ln and "%" not in ln for ln in hit_lines)


@pytest.mark.parametrize("mode", ["sequential", "serve"])
def test_json_rows_keep_no_request_or_its_tokens(tmp_path, capsys, monkeypatch, mode):
    """--json keeps counts per request, never the trace request (a Mooncake prompt's tokens
    are ~0.5 MB): while the document is written, no request of this trace is alive."""
    import gc

    import tui.report
    from engine.model import TraceRequest

    alive: list[int] = []
    rows: list[int] = []

    def spy(path, doc):
        gc.collect()
        alive.append(sum(type(o) is TraceRequest and o.request_id.startswith("mem-")
                         for o in gc.get_objects()))
        rows.append(len(doc["requests"]))

    monkeypatch.setattr(tui.report, "write_json_atomic", spy)
    lines = b"".join(b'{"request_id": "mem-%d", "prompt_token_ids": [%d, 2, 3, 4, 5]}\n' % (i, i)
                     for i in range(12))
    code = main([str(_trace(tmp_path, lines)), "--headless", "--no-progress", "--mode", mode,
                 "--json", str(tmp_path / "r.json")])
    capsys.readouterr()
    assert code == 0 and rows == [12] and alive == [0]
