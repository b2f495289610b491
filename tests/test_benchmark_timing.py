"""The benchmarks' timing helpers (benchmarks/common.py): what they report is what was measured."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "benchmarks"))

import common


def test_alternate_calls_contenders_in_turn_and_returns_every_call():
    calls = []
    times = common.alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 1, 3)
    assert calls == ["a", "b"] + ["a", "b"] * 3  # warm-up of each, then alternating
    assert [len(times["a"]), len(times["b"])] == [3, 3]
    assert all(t >= 0 for t in times["a"] + times["b"])


def test_alternate_in_turns_of_several_steps():
    calls = []
    times = common.alternate(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 1, 2, steps_per_turn=3
    )
    assert calls == ["a", "b"] + (["a"] * 3 + ["b"] * 3) * 2
    assert [len(times["a"]), len(times["b"])] == [6, 6]


def test_paired_ratios_are_quartiles_of_call_by_call_ratios():
    quartiles = common.paired_ratios([2.0, 3.0, 4.0, 5.0, 6.0], [1.0, 1.0, 1.0, 1.0, 1.0])
    assert quartiles == {"q1": 3.0, "median": 4.0, "q3": 5.0}
    assert common.medians({"a": [3.0, 1.0, 2.0]}) == {"a": 2.0}


def test_pooled_processes_runs_fresh_children_and_pools_their_steps(tmp_path):
    """Each child gets the arguments plus --child and a process of its own; its steps are pooled and its
    own ratio of medians reported."""
    script = tmp_path / "child.py"
    script.write_text(
        "import json, os, sys\n"
        "assert sys.argv[1:] == ['--turns', '2', '--child'], sys.argv\n"
        "slow = 1.0 + os.getpid() % 2\n"  # JAX's median differs from process to process
        "times = {'jax': [slow, slow], 'torch': [1.0, 1.0]}\n"
        "print(json.dumps({'times': times, 'shape': str(os.getpid())}))\n"
    )
    times, first, ratios = common.pooled_processes(str(script), ["--turns", "2"], 3, "child")
    assert len(times["jax"]) == len(times["torch"]) == 6
    assert times["torch"] == [1.0] * 6
    assert ratios == [t for t in times["jax"][::2]]  # each process's jax median over its torch median
    assert first["shape"].isdigit()


def test_alternating_processes_runs_each_variant_in_each_round(tmp_path):
    script = tmp_path / "child.py"
    script.write_text("import json, sys\nprint(json.dumps({'step_seconds': float(sys.argv[1])}))\n")
    seconds = common.alternating_processes(str(script), {"a": ["1.5"], "b": ["2.5"]}, 2, "stub")
    assert seconds == {"a": [1.5, 1.5], "b": [2.5, 2.5]}
