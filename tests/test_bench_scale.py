"""Issue 22's benchmarks keep working: each runs in --quick mode and prints its table and RESULT line (no timing).

bench/searcher_speed.py (the searcher alone, synthetic results) and bench/driver_replay.py (the driver-side parts
fed a synthetic stream) need no Ray processes: they are in the fast tier. bench/many_trials.py --fifo runs a real
search: slow tier.
"""

import importlib
import re

import pytest

RESULT = re.compile(r"^RESULT (\w+) (\S+) goal (\S+) (met|missed)$")


pytestmark = pytest.mark.usefixtures("bench_on_path")  # tests/conftest.py


def run_quick(name, capsys, *extra):
    module = importlib.import_module(name)
    module.main(["--quick", *extra])
    out = capsys.readouterr().out
    results = [RESULT.match(line) for line in out.splitlines() if line.startswith("RESULT ")]
    assert results, out
    assert all(results), out
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) >= 3, out
    assert set(table[1]) <= set("|-"), out  # a markdown table: header, rule, rows
    return out, results


def test_searcher_speed(capsys):
    out, results = run_quick("searcher_speed", capsys)
    assert [r.group(1) for r in results] == ["searcher_ms_at_40"]
    assert "| 40 |" in out  # the row of the last mark, with the state save's size
    assert " KB |" in out
    assert "| quality |" in out  # the made-up quality of what it suggested, beside its cost


def test_driver_replay(capsys):
    out, results = run_quick("driver_replay", capsys)
    assert [r.group(1) for r in results] == ["driver_results_per_s_at_30"]
    assert "| 8 | 30 |" in out  # K = 8, the window before 30 finished trials
    for part in ("searcher: suggest", "TensorBoard", "ASHA", "console", "state save + signing"):
        assert part in out, part


@pytest.mark.slow
def test_many_trials_fifo(ray_local, capsys):
    out, results = run_quick("many_trials", capsys, "--fifo", "--no-random", "--trials", "12")
    assert [r.group(1) for r in results][-1] == "many_trials_fifo_efficiency"
    assert ", FIFO," in out  # no early stopping: every trial runs max_t epochs
    assert "| TPE (project) | overhead per trial (s) | " in out
    assert " 12 trials, 48 epochs |" in out


def test_sample_image_speed(capsys):
    out, results = run_quick("sample_image_speed", capsys)
    assert [r.group(1) for r in results] == ["sample_image_ms"]
    assert "| plot_samples + add_image (before) |" in out
    assert "| sample_image + fast PNG (after) |" in out
