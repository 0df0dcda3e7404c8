"""--router prefix-bounded (prefix-aware within 1.25x the mean load) and the note on replicas
a router sent nothing.

prefix-aware alone sends every request that shares a cached prefix to the replica that
first cached it: on a trace whose requests all open with one system prompt, one replica
serves the whole trace (what the inspector's replica selector met on traces/multi_turn.jsonl).
"""

from __future__ import annotations

from engine.backends import BuildOptions, lookup
from engine.replay.routing import PrefixAware, PrefixBounded, idle_replicas_note
from engine.settings import EngineSettings
from tests.conftest import req

BS = 4
SYSTEM = tuple(range(100, 112))  # 3 full blocks every request opens with


class Fake:
    """A replica as a router sees it, with the figures set by hand."""

    def __init__(self, load: int, prefix: int) -> None:
        self._load, self._prefix = load, prefix

    def cached_prefix(self, hashes) -> int:  # noqa: ANN001
        return self._prefix

    def load(self) -> tuple[int, ...]:
        return (self._load,)

    def weight(self, request) -> int:  # noqa: ANN001
        return 10


def pick(*replicas: Fake) -> int:
    return PrefixBounded().pick(req(0, [1]), replicas, lambda r: ())


def test_the_longest_prefix_wins_among_the_replicas_within_the_bound():
    # Loads 30, 0, 0 and a request of 10: the cap is ceil(1.25 * 40 / 3) = 17, so replica 0
    # (30 + 10 = 40) is out although it holds the longest prefix; of the others, the
    # longer prefix wins.
    assert pick(Fake(30, 5), Fake(0, 1), Fake(0, 2)) == 2
    # Loads 10, 10, 0: cap ceil(1.25 * 30 / 3) = 13, only replica 2 fits.
    assert pick(Fake(10, 5), Fake(10, 5), Fake(0, 0)) == 2
    # Loads 6, 6, 6: cap ceil(1.25 * 28 / 3) = 12 and 16 > 12 for all: the least loaded
    # (the lowest index on a tie) takes it.
    assert pick(Fake(6, 0), Fake(6, 3), Fake(6, 1)) == 0
    # Loads 20 and 14: cap ceil(1.25 * 44 / 2) = 28; replica 0 would be 30 (out), so the
    # request goes to replica 1 although it holds nothing.
    assert pick(Fake(20, 4), Fake(14, 0)) == 1
    assert pick(Fake(12, 4), Fake(14, 0)) == 0  # cap ceil(1.25 * 36 / 2) = 23: 22 fits


def shared_prompt_trace(n: int) -> list:
    # Each request: the system prompt, 4 own tokens, one unique token (a partial block).
    return [req(i, SYSTEM + tuple(range(1000 * (i + 1), 1000 * (i + 1) + 4)) + (500_000 + i,),
                output_len=1) for i in range(n)]


def replay(router: str) -> list:
    settings = EngineSettings(block_size=BS, num_blocks=64)
    backend = lookup("v1", "sequential").build(BuildOptions(settings, instances=2, router=router))
    return list(backend.replay(shared_prompt_trace(6), detail=False))


def test_prefix_aware_sends_a_shared_system_prompt_to_one_replica_and_bounded_spreads_it():
    aware = [r for rec in replay(PrefixAware.name) for r in rec.rows]
    assert {r.replica for r in aware} == {0}
    assert [r.hit_tokens for r in aware] == [0] + [12] * 5  # the system prompt's 3 blocks
    # prefix-bounded, hand-worked (every request is 17 tokens): r0 -> 0; r1: cap
    # ceil(1.25 * 34 / 2) = 22 and replica 0 would be 34, so -> 1 (cold there); r2: cap 32,
    # both would be 34, the least loaded (lowest index) -> 0; and so on, alternating.
    bounded = [r for rec in replay(PrefixBounded.name) for r in rec.rows]
    assert [r.replica for r in bounded] == [0, 1, 0, 1, 0, 1]
    assert [r.hit_tokens for r in bounded] == [0, 0, 12, 12, 12, 12]


def test_the_note_names_the_idle_replicas_and_why():
    assert idle_replicas_note([5, 5], "prefix-aware") is None
    assert idle_replicas_note([0, 0], "prefix-aware") is None  # nothing routed yet
    note = idle_replicas_note([6, 0, 0], "prefix-aware")
    assert note.startswith("replicas 1 and 2 received no request: prefix-aware sends")
    assert "--router prefix-bounded" in note
    assert idle_replicas_note([3, 0], "session", done=False).startswith(
        "replica 1 received no request so far: session affinity")


def test_the_report_says_which_replica_got_nothing(tmp_path, capsys):
    from tests.test_replicas import write_trace
    from tui.cli import main

    trace = write_trace(tmp_path / "t.jsonl", shared_prompt_trace(4))
    common = [str(trace), "--headless", "--block-size", "4", "--num-gpu-blocks-override",
              "64", "--instances", "2", "--router"]
    assert main([*common, "prefix-aware"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "replica 1 received no request: prefix-aware sends each request" in out
    assert main([*common, "prefix-bounded"]) == 0
    assert "received no request" not in capsys.readouterr().out
