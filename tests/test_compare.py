"""twobirds-compare on experiment folders as a search and finalize leave them (journals written through Optuna)."""

import json

import optuna
import pytest

from search.driver.study import open_storage

PNG = b"\x89PNG\r\n\x1a\n"
ENTRY_KEYS = {
    "name",
    "folder",
    "objective",
    "mode",
    "trials",
    "complete",
    "warm_started",
    "best",
    "best_at",
    "search_pick",
    "best_config",
    "regimes",
    "importances",
    "importances_note",
    "curve",
}


def label(folder, objective="val_score"):
    """The study's objective, as the search labels it."""
    study = optuna.load_study(study_name=folder.name, storage=open_storage(folder))
    study.set_user_attr("objective", objective)
    return folder


@pytest.fixture(scope="module")
def experiments(tmp_path_factory, make_experiment):
    """A (6 trials, finalized: final/report.json) and B (3 trials, not finalized)."""
    root = tmp_path_factory.mktemp("runs")
    a, b = label(make_experiment(root / "A", trials=6)), label(make_experiment(root / "B", trials=3))
    (a / "final").mkdir()
    validation = {"gates_pass": True, "valid_frac": 0.5, "coverage_norm": 0.25, "score": 1.3}
    regimes = [{"key": "objective", "label": "network only", "validation": validation}]
    (a / "final" / "report.json").write_text(json.dumps({"config": {"head": "lines", "lr": 0.003}, "regimes": regimes}))
    return a, b


def test_compare_writes_the_plots_the_tables_and_json(experiments, tmp_path, run_main):
    a, b = experiments
    done = run_main("compare", a, b, "--out", tmp_path / "out", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert set(summary) == {"out", "files", "experiments"}
    assert summary["files"] == {"plot": "compare.png", "importances": "importances.png", "markdown": "compare.md"}
    for name in ("compare.png", "importances.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == PNG
    first, second = summary["experiments"]
    assert set(first) == ENTRY_KEYS
    assert (first["name"], first["trials"], second["trials"]) == ("A", 6, 3)
    assert first["regimes"][0]["score"] == 1.3
    assert second["regimes"] == []
    assert set(first["importances"]) == {"lr", "head", "beta"}  # 4 complete trials (one diverged)
    assert second["importances"] is None
    assert "at least 4" in second["importances_note"]
    assert [p["trial"] for p in first["curve"]] == [1, 2, 3, 4, 5, 6]
    assert first["best"] == max(p["best"] for p in first["curve"] if p["best"] is not None)
    assert first["search_pick"]["stop_reason"] == "finished"
    markdown = (tmp_path / "out" / "compare.md").read_text()
    assert "| A | network only | PASS | 0.5 | 0.25 | 1.3 |" in markdown
    assert "| B | not finalized" in markdown


def test_compare_prints_one_line_per_experiment(experiments, tmp_path, run_main):
    done = run_main("compare", *experiments, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("A: 6 trials (4 complete), best val_score ")
    assert lines[0].endswith("; finalized")
    assert lines[1].endswith("; not finalized")
    assert any(line.endswith("compare.png") for line in lines)


def test_compare_refuses_in_one_line(experiments, tmp_path, one_line_error, make_experiment):
    a, b = experiments
    one_line_error("compare", a, tmp_path / "nope", "--out", tmp_path / "o", message="nope: no such folder")
    one_line_error("compare", a, a, "--out", tmp_path / "o", message="named twice")
    (tmp_path / "empty").mkdir()
    one_line_error("compare", a, tmp_path / "empty", "--out", tmp_path / "o", message="no optuna.journal")
    other = label(make_experiment(tmp_path / "R", trials=3, objective="refined_score"), "val_refined_score")
    one_line_error("compare", a, other, "--out", tmp_path / "o", message="different objectives")
    (tmp_path / "file").write_text("x")
    one_line_error("compare", a, b, "--out", tmp_path / "file", message="a file, not a folder")
