"""bench/warm_start.py keeps working: its --quick mode (four real searches, tiny) prints its table and RESULT line.

Never asserts a timing or whether the goal was met at this size; results live in docs/benchmarks.md.
"""

import importlib
import re
import sys

import pytest

RESULT = re.compile(r"^RESULT (\w+) (\S+) goal (\S+) (met|missed)$")


@pytest.fixture
def bench(repo):
    """bench/ on sys.path, as when a benchmark runs as a script (it imports bench/common.py)."""
    folder = str(repo / "bench")
    sys.path.insert(0, folder)
    yield
    sys.path.remove(folder)


@pytest.mark.slow
def test_warm_start_bench_quick(bench, ray_local, capsys):
    importlib.import_module("warm_start").main(["--quick"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    result = RESULT.match(lines[-1])
    assert result, lines[-1]
    assert result.group(1) == "warm_start_trials_to_cold_2T_best"
    table = [line for line in lines if line.startswith("|")]
    assert set(table[1]) <= set("|-")
    for search in ("A = cold T", "B = warm from A, T", "cold 2T", "B to cold 2T's best"):
        assert any(f"| {search} |" in line for line in table), search
    warm = next(line for line in table if "| B = warm from A, T |" in line)
    assert warm.split("|")[4].strip() == "2"  # B started with A's two trials
