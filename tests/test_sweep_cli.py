"""`prefix-tui sweep`'s bad input: one line on stderr, exit 2, before any point runs and
without touching existing files."""

from __future__ import annotations

import pytest

from tui.cli import main


@pytest.fixture
def trace(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"prompt_token_ids": [1, 2, 3]}\n')
    return str(p)


@pytest.mark.parametrize("flags, words", [
    (["--num-gpu-blocks-override", "10,x"], "--num-gpu-blocks-override: 'x' is not a number"),
    (["--num-gpu-blocks-override", "10", "--capacity-tokens", "1e6"], "not both"),
    (["--block-size", "16,inf"], "--block-size: 'inf' is not allowed"),
    (["--capacity-tokens", "8"], "a pool of 1 blocks"),
    (["--warmup-fraction", "1.5"], "--warmup-fraction must be in [0, 1)"),
    (["--engine", "v0"], "sweep runs vLLM V1"),
    (["--ray-address", "x:1"], "--ray-address goes with --executor ray"),
    (["--jobs", "0"], "--jobs must be >= 1"),
    (["--hf-config", "x.json"], "--hf-config (hybrid KV layouts) is not supported"),
    (["--block-size", "0"], "must be a whole number >= 1"),
    (["--plot", "curve.jpg"], "must end in .png or .svg"),
    (["--plot", "curve.png", "--tui"], "--plot go without it"),
    # the CPU-tier axis: serve mode only, numbers >= 0, one of the two flags
    (["--kv-offloading-size", "0,1"], "--kv-offloading-size: the CPU tier is vLLM's "
                                      "scheduler's, sweep it with --mode serve"),
    (["--num-cpu-blocks", "10"], "--num-cpu-blocks: the CPU tier is vLLM's scheduler's"),
    (["--mode", "serve", "--kv-offloading-size", "1,x"], "'x' is not a number"),
    (["--mode", "serve", "--num-cpu-blocks", "0,-4"], "'-4' must be a number >= 0"),
    (["--mode", "serve", "--num-cpu-blocks", "1.5"], "'1.5' is not a number"),
    (["--mode", "serve", "--num-cpu-blocks", "4,4"], "a value given twice"),
    (["--mode", "serve", "--kv-offloading-size", "1", "--num-cpu-blocks", "2"], "not both"),
    # the replicas axis
    (["--instances", "0,2"], "--instances: '0' must be a whole number >= 1"),
    (["--instances", "2,inf"], "--instances: 'inf' is not allowed"),
    (["--router", "session"], "--router goes with --instances N"),
    (["--instances", "2", "--replica", "1"], "--replica is the inspector's"),
    (["--mode", "serve", "--instances", "1,2", "--closed-loop"], "--closed-loop with "
                                                                "--instances"),
])
def test_bad_flags_are_one_line(trace, capsys, flags, words):
    assert main(["sweep", trace, *flags]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err


def test_existing_output_is_refused_and_kept(trace, tmp_path, capsys):
    out = tmp_path / "s.json"
    out.write_text("keep me")
    assert main(["sweep", trace, "--json", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    assert main(["sweep", trace, "--csv", trace, "--force"]) == 2
    assert "is the input trace" in capsys.readouterr().err


def test_missing_trace(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err
