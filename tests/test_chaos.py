"""bench/chaos.py --quick: trial processes and the driver killed under a real smoke search, then resumed."""

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_chaos_quick_prints_its_table_and_leaves_no_trial_running(repo, tmp_path):
    command = [sys.executable, "bench/chaos.py", "--quick", "--minutes", "1", "--kill-every", "10"]
    done = subprocess.run([*command, "--out", str(tmp_path)], cwd=repo, capture_output=True, text=True, timeout=900)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    assert "| driver run | trial kills | driver killed | exit code |" in done.stdout
    names = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert names == [
        "chaos_trials_reported_missing",
        "chaos_journal_running",
        "chaos_values_disagree",
        "chaos_trials_without_tensorboard_run",
        "chaos_trials_lost",
    ]
    assert "RESULT chaos_journal_running 0.000 goal 0 met" in done.stdout  # the finished search closed them all
