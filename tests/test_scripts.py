"""scripts/finalize.py, generate.py and score.py on real files, as a user runs them from the repo root.

They run in-process through their main(argv) (the `run_main` fixture: the same code, exit status and
console, without a Python + torch start each); one installed console script runs as a real process.
"""

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import torch
from torch.utils.data import TensorDataset

from cvae.data import load_challenge, make_dataset
from cvae.functions import FunctionPair
from cvae.train import load_model

PNGS = ("training_curves.png", "samples.png", "coverage.png", "search_history.png", "search_slices.png")


@pytest.fixture(scope="session")
def run(run_main):
    """run(script, *args) -> its Ran, asserting exit 0 (check=False: any status)."""

    def run(script, *args, check=True):
        done = run_main(script, *args)
        if check:
            assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        return done

    return run


@pytest.fixture(scope="module")
def finalized(tmp_path_factory, make_experiment, run):
    """One finalize of a tiny experiment (its data section: 128 rows), with data options of its own."""
    folder = make_experiment(tmp_path_factory.mktemp("storage") / "tiny", train_size=128)
    done = run("finalize", "--experiment", folder, "--lines", "uniform", "--x-targets", "uniform_branch")
    return folder / "final", done


@pytest.fixture(scope="module")
def conditions(tmp_path_factory):
    """A scoring file of 5 conditions with their true x, in the challenge's layout."""
    x, y = make_dataset(5, FunctionPair(), seed=7)
    path = tmp_path_factory.mktemp("scoring") / "conditions.pt"
    torch.save(TensorDataset(x.unsqueeze(1), y.unsqueeze(1)), path)
    return path


COMMANDS = (
    "twobirds-tune",
    "twobirds-finalize",
    "twobirds-generate",
    "twobirds-score",
    "twobirds-demo",
    "twobirds-compare",
)


@pytest.fixture(scope="session")
def console_scripts(repo) -> dict:
    """pyproject.toml's [project.scripts] (read by hand: tomllib needs Python 3.11)."""
    section = (repo / "pyproject.toml").read_text().split("[project.scripts]\n", 1)[1].split("\n[", 1)[0]
    pairs = (line.split("=", 1) for line in section.splitlines() if "=" in line and not line.startswith("#"))
    return {name.strip(): target.strip().strip('"') for name, target in pairs}


def test_every_command_is_a_console_script(console_scripts, repo):
    assert set(COMMANDS) <= set(console_scripts)
    for path in sorted((repo / "scripts").glob("*.py")):
        if path.name != "__init__.py":
            assert "sys.path" not in path.read_text(), f"{path.name} edits sys.path"
            target = {"tune": "search.cli:main"}.get(path.stem, f"scripts.{path.stem}:main")  # tune.py wraps search.cli
            assert target in console_scripts.values(), path.name


@pytest.mark.parametrize("command", COMMANDS)
def test_every_console_script_is_installed_and_its_target_prints_help(command, console_scripts, capsys):
    installed = shutil.which(command, path=str(Path(sys.executable).parent))
    assert installed, f"{command} is not installed beside {sys.executable}; pip install -e ."
    module, function = console_scripts[command].split(":")
    with pytest.raises(SystemExit) as done:
        getattr(importlib.import_module(module), function)(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {command} "), out  # the name its errors start with, too


def test_an_installed_console_script_runs_as_a_process():
    installed = shutil.which("twobirds-score", path=str(Path(sys.executable).parent))
    assert installed, f"twobirds-score is not installed beside {sys.executable}; pip install -e ."
    done = subprocess.run([installed, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("usage: twobirds-score "), done.stdout


def test_finalize_writes_model_report_and_every_plot(finalized):
    out, done = finalized
    assert "retraining" in done.stderr
    assert "2/2" in done.stderr
    assert "epoch" in done.stderr
    assert "validation in the objective's regime (score: network only): gates" in done.stdout
    model = load_model(out / "model.pt")
    assert model.config.epochs == 2
    assert model.config.head == "lines"
    for name in PNGS:
        assert (out / name).stat().st_size > 1000, name
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3, (name, image.shape)
        assert min(image.shape[:2]) > 200, (name, image.shape)
    report = json.loads((out / "report.json").read_text())
    assert report["training"]["status"] == "finished"
    assert report["training"]["epochs"] == 2
    assert len(report["training"]["history"]) == 2
    validation = report["validation"]
    assert validation["conditions"] == 6
    assert validation["samples_per_condition"] == 30
    for key in (
        "gates_pass",
        "gate_monotone",
        "gate_straight",
        "gate_rmse",
        "overall_rmse",
        "valid_frac",
        "coverage",
        "coverage_norm",
        "branches_median",
        "per_sample",
        "score",
    ):
        assert key in validation, key
    assert set(report["timings"]) >= {"data_s", "train_s", "evaluate_s", "plots_s", "total_s"}
    assert report["search"]["best_trial"]["trial_id"].startswith("trial_")
    assert report["config"]["functions"] == list(model.config.functions)
    markdown = (out / "report.md").read_text()
    assert "## Validation" in markdown
    assert all(f"]({name})" in markdown for name in PNGS)


def test_finalize_data_options_choose_the_training_lines_and_targets(finalized, make_experiment, tmp_path, run):
    out, _ = finalized
    data = json.loads((out / "report.json").read_text())["data"]
    # the rows from the experiment's data section, the lines and targets from the options
    assert (data["train_rows"], data["lines"], data["x_targets"]) == (128, "uniform", "uniform_branch")
    folder = make_experiment(tmp_path / "storage" / "tiny", study=False)
    assert "invalid choice" in run("finalize", "--experiment", folder, "--lines", "box", check=False).stderr


@pytest.mark.parametrize(
    ("damage", "message"),
    [("no_finished_trial", "no finished trial"), ("no_best_config", "best_config.yaml is missing")],
)
def test_finalize_on_a_broken_experiment_exits_2_with_one_line(
    tmp_path, damage, message, make_experiment, one_line_error
):
    folder = make_experiment(tmp_path / "exp", finished=damage != "no_finished_trial")
    if damage == "no_best_config":
        (folder / "best_config.yaml").unlink()
    one_line_error("finalize", "--experiment", folder, message=message)
    assert not (folder / "final").exists()


@pytest.fixture(scope="module")
def generated(finalized, conditions, tmp_path_factory, run):
    out = tmp_path_factory.mktemp("generated") / "result.pt"
    model = finalized[0] / "model.pt"
    done = run(
        "generate",
        "--model",
        model,
        "--scoring",
        conditions,
        "--samples",
        30,
        "--out",
        out,
        "--seed",
        3,
        "--device",
        "cpu",
    )
    return out, done


def test_generate_writes_the_submission_format(generated, conditions):
    out, done = generated
    assert "5 conditions x 30 samples" in done.stdout
    with torch.serialization.safe_globals([TensorDataset]):
        raw = torch.load(out, weights_only=True)
    assert isinstance(raw, TensorDataset)
    assert len(raw.tensors) == 2
    assert all(t.shape == (150, 1, 50, 2) and t.dtype == torch.float32 for t in raw.tensors)
    x, y = load_challenge(out)
    _, given = load_challenge(conditions)
    assert torch.equal(y, given.repeat_interleave(30, dim=0))  # y repeats the GIVEN condition, 30 rows each
    assert not torch.equal(x[0], x[1])  # 30 different samples


def test_generate_without_a_model_needs_uniform_proposals(conditions, tmp_path, run, one_line_error):
    out = tmp_path / "baseline.pt"
    run(
        "generate",
        "--proposals-from",
        "uniform",
        "--proposals",
        8,
        "--refine-steps",
        2,
        "--samples",
        4,
        "--scoring",
        conditions,
        "--out",
        out,
    )
    assert load_challenge(out)[0].shape == (20, 50, 2)
    one_line_error("generate", "--scoring", conditions, "--out", out, message="--model is required")


def test_score_json_on_a_generated_submission(generated, conditions, tmp_path, run, one_line_error):
    out = generated[0]
    result = json.loads(run("score", out, "--scoring", conditions, "--json").stdout)
    for key in ("gates_pass", "overall_rmse", "valid_frac", "coverage", "coverage_norm", "branches_median"):
        assert key in result, key
    assert result["conditions"] == 5
    assert result["samples_per_condition"] == 30
    assert "serve as true x" in result["conditions_note"]
    other = tmp_path / "other.pt"
    x, y = make_dataset(5, FunctionPair(), seed=99)
    torch.save(TensorDataset(x.unsqueeze(1), y.unsqueeze(1)), other)
    one_line_error("score", out, "--scoring", other, message="not a condition of the scoring file")


@pytest.mark.needs_shared
def test_score_on_the_official_sample_submission(repo, run):
    """Its y holds its own 50 conditions (not rows of validation_dataset.pt): it is scored against itself."""
    sample_submission = repo.parent / "shared" / "twobirds" / "sample_submission.pt"
    result = json.loads(run("score", sample_submission, "--scoring", sample_submission, "--json").stdout)
    assert result["gates_pass"]
    assert result["overall_rmse"] == pytest.approx(0.09998, abs=1e-4)
    assert result["valid_frac"] == pytest.approx(0.57, abs=0.01)
    assert (result["conditions"], result["samples_per_condition"]) == (50, 30)
    assert 0.2 < result["coverage"] < 0.4
    assert 10 <= result["branches_median"] <= 16
    text = run("score", sample_submission).stdout  # --scoring defaults to the submission itself
    assert "all gates" in text
    assert "PASS" in text.split("all gates")[1].splitlines()[0]
    assert "56.9%" in text
