"""scripts/demo.py, the README's main job, end to end on the smoke search (a real local Ray)."""

import json
import subprocess
import sys

import pytest

from cvae.data import load_challenge


@pytest.mark.slow
def test_the_main_job_searches_finalizes_generates_and_scores(tmp_path, repo):
    done = subprocess.run(
        [
            sys.executable,
            "scripts/demo.py",
            "--config",
            "search/configs/smoke.yaml",
            "--out",
            str(tmp_path),
            "--time-budget",
            "60",
            "--conditions",
            "3",
            "--final-rows",
            "700",
            "--final-epochs",
            "3",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    final = tmp_path / "final"
    report = json.loads((final / "report.json").read_text())
    assert report["data"]["train_rows"] == 700  # the smoke search picks an MLP: final rows apply
    assert "--epochs 3 --time-budget 600" in done.stdout  # finalize's training is bounded in time too
    assert "--max-lr 0.001" in done.stdout  # ... and its peak learning rate capped (docs/quality.md)
    for name in ("submission.pt", "submission_check.pt", "submission_refined.pt"):
        x, _ = load_challenge(final / name)
        assert x.shape == (3 * 30, 50, 2)
    assert done.stdout.count("Challenge gates") == 3, done.stdout[-2000:]  # each regime's submission scored
    # a categorical model's check draws at CATEGORICAL_CHECK_SPREAD (cvae/regimes.py), and its label says so
    for regime in ("regime: network only", "regime: network + check (K=300", "regime: network + refinement (K=300"):
        assert regime in done.stdout, done.stdout[-3000:]
    # ... and their scores recorded in final/, not only on the console
    recorded = json.loads((final / "submissions.json").read_text())["submissions"]
    assert [s["file"] for s in recorded] == ["submission.pt", "submission_check.pt", "submission_refined.pt"]
    assert recorded[0]["regime"] == "network only"
    assert recorded[1]["regime"].startswith("network + check (K=300")
    assert recorded[2]["regime"].startswith("network + refinement (K=300, 20 LM steps")
    for entry in recorded:
        assert {"gates_pass", "valid_frac", "coverage_norm"} <= set(entry["score"])
    # the report names the objective's regime first (smoke.yaml ranks by score: network only)
    assert report["regimes"][0]["label"] == "network only"
    assert report["objective"]["name"] == "score"


def test_the_final_models_epochs_are_a_step_budget_at_the_chosen_batch(tmp_path):
    from scripts.demo import final_data, final_epochs

    # 40,000 steps of 100,000 rows: 26 epochs at batch 64, 51 at 128, capped at 60 at 256; 0 steps: always 60
    assert [final_epochs(60, 40_000, 100_000, batch) for batch in (64, 128, 256)] == [26, 51, 60]
    assert final_epochs(60, 0, 100_000, 64) == 60
    assert final_epochs(60, 10, 100_000, 64) == 1
    (tmp_path / "best_config.yaml").write_text("model: mlp\nbatch_size: 64\n")
    assert final_data(tmp_path, 100_000, 60, 40_000) == ["--train-size", "100000", "--epochs", "26"]
    assert final_data(tmp_path, 100_000, 60, 0) == ["--train-size", "100000", "--epochs", "60"]


@pytest.mark.parametrize(
    "flag", ["--final-steps", "--final-rows", "--conditions", "--final-time-budget", "--final-max-lr"]
)
def test_the_main_job_refuses_a_negative_count_before_any_work(run_main, flag):
    ran = run_main("demo", flag, "-5")
    assert ran.returncode == 2
    assert ran.stderr.strip().splitlines()[-1] == f"twobirds-demo: error: argument {flag}: must be >= " + (
        "0, got -5" if flag in ("--final-steps", "--final-max-lr") else "1, got -5"
    )


def test_finalize_refuses_a_time_budget_under_a_second_before_any_work(run_main, tmp_path):
    ran = run_main("finalize", "--experiment", tmp_path, "--time-budget", "0")
    assert ran.returncode == 2
    last = ran.stderr.strip().splitlines()[-1]
    assert last == "twobirds-finalize: error: argument --time-budget: must be >= 1, got 0"
    ran = run_main("finalize", "--experiment", tmp_path, "--max-lr=-1e-3")
    assert ran.returncode == 2
    assert ran.stderr.strip().splitlines()[-1] == "twobirds-finalize: error: argument --max-lr: must be >= 0, got -1e-3"
