"""The headless report and compare say what they count (issue 14): served vs replayed and
the outcome breakdown, one max_model_len rule in both modes, compare's modes, labels,
ratios, footer and --json, warnings for flags that do nothing, tables that fit a pipe."""

from __future__ import annotations

import json

import pytest

from tui.cli import main

# max_model_len 32 (block size 16): r-long's 40-token prompt is too long; r-cap's 20 + 20
# is capped at 20 + 12 (truncated); r-ok's 17 + 3 is served whole.
THREE = (b'{"request_id": "r-long", "prompt_token_ids": [%s], "output_len": 1}\n'
         b'{"request_id": "r-cap", "prompt_token_ids": [%s], "output_len": 20}\n'
         b'{"request_id": "r-ok", "prompt_token_ids": [%s], "output_len": 3}\n') % (
    b",".join(b"%d" % i for i in range(100, 140)),
    b",".join(b"%d" % i for i in range(200, 220)),
    b",".join(b"%d" % i for i in range(300, 317)))
FLAGS = ["--no-progress", "--max-model-len", "32", "--num-gpu-blocks-override", "64"]


def _trace(tmp_path, name: str = "t.jsonl", data: bytes = THREE):
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return str(p)


def _value(out: str, label: str) -> str:
    line = next(ln for ln in out.splitlines() if label in ln)
    return line.split("│")[-2].strip()


@pytest.mark.parametrize("mode", ["sequential", "serve"])
def test_report_counts_served_requests_and_every_outcome(tmp_path, capsys, mode):
    out_json = tmp_path / "r.json"
    code = main([_trace(tmp_path), "--headless", *FLAGS, "--mode", mode, "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0
    assert _value(out, "Requests replayed") == "3"
    assert _value(out, "Requests served (got blocks)") == "2"
    assert _value(out, "of which output truncated") == "1"
    assert _value(out, "Requests too long (max_model_len)") == "1"
    assert _value(out, "Requests not fitted (pool too small)") == "0"
    assert _value(out, "Prompt tokens, served requests") == "37"  # 20 + 17, not the 40
    totals = json.loads(out_json.read_text())["totals"]
    assert totals["outcomes"] == {"ok": 1, "truncated": 1, "not_fitted": 0, "too_long": 1, "error": 0}
    assert totals["served"] == 2 and totals["not_fitted"] == 1  # not_fitted: as before, both


def test_compare_modes_share_one_rule_a_footer_and_one_line_rows(tmp_path, capsys):
    code = main(["compare", _trace(tmp_path), "--modes", "sequential,serve", *FLAGS])
    out = capsys.readouterr().out
    assert code == 0
    head = next(ln for ln in out.splitlines() if "metric" in ln)
    assert "sequential" in head and "serve" in head and "ratio 2nd/1st" in head
    assert "mode sequential / serve" in out and "mode sequential ·" not in out
    # Both modes replay the same requests: the same served / truncated / too long.
    for label in ("Requests served", "of which output truncated", "Requests too long"):
        line = next(ln for ln in out.splitlines() if label in ln).split("│")
        assert line[2].strip() == line[3].strip() and line[4].strip() in ("1.00×", "–")
    # Piped: rich would assume 80 columns and wrap; every row stays one line.
    assert any("max_num_seqs / max_num_batched_tokens" in ln for ln in out.splitlines())
    assert any("AsyncScheduler (chunked prefill on)" in ln for ln in out.splitlines())


def test_compare_labels_ratios_and_mode_flags(tmp_path, capsys):
    a, b = _trace(tmp_path, "a/t.jsonl"), _trace(tmp_path, "b/t.jsonl")
    code = main(["compare", a, b, a, "--mode", "serve", *FLAGS])
    head = next(ln for ln in capsys.readouterr().out.splitlines() if "metric" in ln)
    assert code == 0
    for label in ("a/t.jsonl", "b/t.jsonl", "a/t.jsonl #2", "ratio 2nd/1st", "ratio 3rd/1st"):
        assert label in head
    assert main(["compare", a, "--mode", "sequential,nope"]) == 2
    assert "unknown mode 'nope' (have: sequential, serve)" in capsys.readouterr().err
    assert main(["compare", a]) == 2
    assert "compare needs two runs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--no-progress no progress bar" in help_text and "--mode MODE[,MODE], --modes" in help_text


def test_compare_json_is_written_whole_and_never_over_a_file(tmp_path, capsys):
    t = _trace(tmp_path)
    out = tmp_path / "c.json"
    out.write_text("keep")
    assert main(["compare", t, "--modes", "sequential,serve", "--json", str(out), *FLAGS]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and out.read_text() == "keep"
    assert main(["compare", t, t, "--json", t, "--force", *FLAGS]) == 2
    assert "is the input trace" in capsys.readouterr().err
    code = main(["compare", t, "--modes", "sequential,serve", "--json", str(out), "--force", *FLAGS])
    capsys.readouterr()
    doc = json.loads(out.read_text())
    assert code == 0 and [r["label"] for r in doc["runs"]] == ["sequential", "serve"]
    assert [r["settings"]["mode"] for r in doc["runs"]] == ["sequential", "serve"]
    assert doc["runs"][0]["serve"] is None and doc["runs"][1]["serve"]["finished"] == 2
    assert all(r["totals"]["outcomes"]["truncated"] == 1 for r in doc["runs"])


def test_serve_only_flags_in_sequential_mode_get_a_warning(tmp_path, capsys):
    t = _trace(tmp_path)
    assert main([t, "--headless", *FLAGS, "--max-num-seqs", "3", "--serve-iteration-time", "1"]) == 0
    err = capsys.readouterr().err
    assert ("prefix-tui: warning: --max-num-seqs, --serve-iteration-time apply only to "
            "--mode serve; ignored") in err
    assert main([t, "--headless", *FLAGS, "--mode", "serve", "--max-num-seqs", "3"]) == 0
    assert "warning" not in capsys.readouterr().err


async def test_totals_columns_stay_put_at_seven_digit_values():
    from textual.app import App

    from engine.model import Totals
    from tui.widgets.totals import TotalsFigures, totals_values

    class Panel(App):
        def compose(self):
            yield TotalsFigures()

    app = Panel()
    async with app.run_test(size=(64, 10)) as pilot:
        figures = app.query_one(TotalsFigures)
        small = figures.render().plain.splitlines()
        figures.values = totals_values(Totals(requests=1_234_567, blocks_reused=9_876_543,
                                              blocks_new=1_000_000, evictions=2_345_678))
        await pilot.pause()
        big = figures.render().plain.splitlines()
    # The second label starts at the same column on every line, small values or big.
    labels = ["avg", "last", "blocks new", "did not", "vLLM"]
    assert len({ln.index(label) for ln, label in zip(small + big, labels * 2)}) == 1
    assert "1,234,567" in big[-1] and "9,876,543" in big[2]
