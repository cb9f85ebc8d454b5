"""search/finalize in-process: reading an experiment folder, retraining, the report's plots.

The scripts themselves (subprocesses, real files) are tested in test_scripts.py.
"""

import io

import matplotlib.image
import pandas as pd
import pytest
import torch
import yaml

from cvae.config import Config
from cvae.data import DataSpec, make_dataset
from cvae.functions import FunctionPair
from cvae.plots import figure_to_png, plot_coverage, plot_training_curves
from cvae.train import load_checkpoint, load_model
from search.finalize import FinalizeError, load_config_file, load_experiment, retrain
from search.finalize.run import epochs_planned, epochs_within
from search.trials import read_results


def _decodes(png: bytes):
    image = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert image.ndim == 3
    assert image.shape[0] > 100
    assert image.shape[1] > 100
    return image


# --- the experiment folder ---


def test_load_experiment_reads_config_data_and_best_trial(tmp_path, make_experiment):
    folder = make_experiment(tmp_path / "exp")
    experiment = load_experiment(folder)
    assert experiment.config.head == "lines"
    assert experiment.config.epochs == 2
    assert experiment.data == DataSpec(train_size=256, val_conditions=6, seed=0)
    assert experiment.params == ["lr", "head", "beta"]
    results = read_results(folder / "results.csv")
    full = results[results["stop_reason"] == "finished"]  # the search prefers full-length trials
    assert experiment.best_trial["trial_id"] == full.loc[full["score"].idxmax(), "trial_id"]
    assert experiment.finished_trials == 5
    assert experiment.mode == "max"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no_folder", "no such experiment folder"),
        ("no_search_config", "search_config.yaml is missing"),
        ("no_results", "results.csv is missing"),
        ("no_finished_trial", "no finished trial"),
        ("no_best_config", "best_config.yaml is missing"),
        ("bad_yaml", "not valid YAML"),
        ("unknown_key", "learning_rate: unknown key; allowed are functions, "),
    ],
)
def test_a_broken_experiment_fails_with_one_clear_line(tmp_path, damage, message, make_experiment):
    folder = tmp_path / "exp"
    if damage != "no_folder":
        make_experiment(folder, finished=damage != "no_finished_trial")
    if damage == "no_search_config":
        (folder / "search_config.yaml").unlink()
    if damage == "no_results":
        (folder / "results.csv").unlink()
    if damage == "no_best_config":
        (folder / "best_config.yaml").unlink()
    if damage == "bad_yaml":
        (folder / "best_config.yaml").write_text("lr: [1,\n")
    if damage == "unknown_key":
        (folder / "best_config.yaml").write_text("learning_rate: 0.1\n")
    with pytest.raises(FinalizeError, match=message) as info:
        load_experiment(folder)
    assert "\n" not in str(info.value)


def test_a_bare_config_file_is_accepted_and_a_search_file_refused(tmp_path, make_experiment, tiny_config):
    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    experiment = load_config_file(path, {"train_size": 128, "val_conditions": 3})
    assert experiment.config.hidden == 32
    assert experiment.data.train_size == 128
    assert experiment.results is None
    make_experiment(tmp_path / "exp")
    with pytest.raises(FinalizeError, match="search file, not one configuration"):
        load_config_file(tmp_path / "exp" / "search_config.yaml")


# --- retraining and the model file ---


def test_retraining_is_seeded_and_the_model_loads_without_unpickling_code(tmp_path, tiny_config):
    config = Config(**{**tiny_config, "epochs": 1})
    train, val = DataSpec(train_size=128, val_conditions=3).build(FunctionPair())
    first = retrain(config, train, val, "cpu", progress=False)
    second = retrain(config, train, val, "cpu", progress=False)
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    path = first.save(tmp_path / "model.pt", resumable=False)
    state = load_checkpoint(path)  # weights_only=True
    assert set(state) == {"config", "model", "history", "epoch", "status"}
    assert state["epoch"] == 1
    model = load_model(path)
    y = val[1][:2]
    assert torch.allclose(model.decode(torch.zeros(2, 4), y), first.model.eval().decode(torch.zeros(2, 4), y))


def test_a_time_budget_keeps_the_epochs_that_fit_and_the_saved_config_says_so(tmp_path, tiny_config):
    config = Config(**{**tiny_config, "epochs": 4, "lr_schedule": "cosine"})
    train, val = DataSpec(train_size=128, val_conditions=3).build(FunctionPair())
    said = []
    short = retrain(config, train, val, "cpu", progress=False, time_budget=1e-6, log=said.append)
    assert (short.epoch, short.status, short.config.epochs) == (1, "finished", 1)
    assert len(said) == 1
    assert "trained 1 of 4 epochs" in said[0]
    assert said[0].endswith("(--time-budget 1e-06 s)")  # the budget as the user gave it
    path = short.save(tmp_path / "model.pt", resumable=False)
    assert load_checkpoint(path)["config"]["epochs"] == 1
    ample = retrain(config, train, val, "cpu", progress=False, time_budget=1e6, log=said.append)
    plain = retrain(config, train, val, "cpu", progress=False)
    assert (ample.epoch, ample.config.epochs, len(said)) == (4, 4, 1)
    for key, value in ample.model.state_dict().items():  # timing the first epoch changes nothing else
        assert torch.equal(value, plain.model.state_dict()[key]), key


def test_a_cut_plan_shows_each_epoch_once_in_the_progress_bar(tiny_config, capsys):
    config = Config(**{**tiny_config, "epochs": 4})
    train, val = DataSpec(train_size=128, val_conditions=3).build(FunctionPair())
    retrain(config, train, val, "cpu", progress=True, time_budget=1e-6, log=lambda line: None)
    shown = capsys.readouterr().err.split("\r")
    assert len([line for line in shown if " 1/1 [" in line]) == 1  # the bar's last line, not also a refresh


def test_a_plan_that_ends_before_the_y_term_starts_is_named_once(tiny_config):
    config = Config(**{**tiny_config, "epochs": 4, "wy": 1.0, "wy_delay": 2})
    train, val = DataSpec(train_size=128, val_conditions=3).build(FunctionPair())
    said = []
    retrain(config, train, val, "cpu", progress=False, time_budget=1e-6, log=said.append)
    warnings = [line for line in said if "warning" in line]
    assert len(warnings) == 1
    assert "1 epochs fit in the time budget" in warnings[0]
    assert "after 2 (wy_delay)" in warnings[0]
    assert warnings[0].endswith("raise --time-budget or lower --train-size")
    said.clear()
    retrain(config, train, val, "cpu", progress=False, time_budget=1e6, log=said.append)  # all 4 fit: no warning
    assert said == []


def test_epochs_within_a_budget():
    assert epochs_within(600, 10, 60) == 60
    assert epochs_within(600, 14.5, 60) == 41
    assert epochs_within(600, 900, 60) == 0
    assert epochs_within(-5, 10, 60) == 0
    assert epochs_within(600, 0.0, 5) == 5


def test_the_plan_is_cut_at_a_slow_pace_and_taken_back_at_a_faster_one():
    assert epochs_planned(60, 1, 600 - 13, 13.0) == 1 + 45  # a slow first epoch cuts the plan
    assert epochs_planned(60, 2, 600 - 20, 7.0) == 60  # the next, faster one takes the cut back, up to the plan
    assert epochs_planned(60, 12, 600 - 100, 16.0) == 12 + 31  # a dearer phase cuts again
    assert epochs_planned(60, 43, 0.5, 16.0) == 43  # nothing left: the epochs done


# --- plots ---


def test_plot_training_curves_and_coverage_degrade_gracefully():
    _decodes(figure_to_png(plot_training_curves([{"epoch": 1, "loss": 1.0, "kld": 0.1, "x_loss": 0.2, "y_loss": 0.7}])))
    functions = FunctionPair(("x0 + x1", "x0 * x1"))
    x, _ = make_dataset(2, FunctionPair(), seed=1)
    _decodes(figure_to_png(plot_coverage(x[:, None], functions(x), functions)))


# --- the report ---


def test_finalize_on_a_refined_score_experiment_reports_the_refined_regime_first(tmp_path, make_experiment):
    from search.finalize import finalize

    folder = make_experiment(tmp_path / "refined", objective="refined_score")
    report = finalize(load_experiment(folder), tmp_path / "final", samples=6, progress=False, log=lambda *a: None)
    assert report["objective"]["name"] == "refined_score"
    assert report["objective"]["metric"] == "val_refined_score"
    labels = [r["label"] for r in report["regimes"]]
    assert labels[0] == "network + refinement (K=6, 2 LM steps)" == report["objective"]["regime"], labels
    assert report["regimes"][0]["objective"]
    assert not any(r["objective"] for r in report["regimes"][1:])
    assert {"network only", "network + check (K=300)", "network + refinement (K=300, 20 LM steps, T=2)"} <= set(labels)
    assert report["validation"] == report["regimes"][0]["validation"]  # the header's numbers: the objective's regime
    # the search's trials by how they ended (make_experiment: finished, asha, finished, asha, diverged, finished)
    assert report["search"]["ended"] == {
        "total": 6,
        "finished": 3,
        "asha": 2,
        "diverged": 1,
        "error": 0,
        "asha_at_epoch": {"1": 2},
    }
    assert {d["what"] for d in report["differences"]} >= {"training rows", "epochs", "samples per validation condition"}
    assert [d["same"] for d in report["differences"] if d["what"] == "samples per validation condition"] == [False]
    markdown = (tmp_path / "final" / "report.md").read_text()
    sections = [line for line in markdown.splitlines() if line.startswith("## Validation: ")]
    assert sections[0] == "## Validation: network + refinement (K=6, 2 LM steps) (the search objective's regime)"
    bold = [line for line in markdown.splitlines() if line.startswith("**Final model, ")]
    assert bold
    assert "network + refinement (K=6, 2 LM steps)" in bold[0]
    assert "3 finished, 2 stopped by ASHA (2 at epoch 1), 1 diverged, 0 errored" in markdown
    assert "| training rows | 256 | 256 | same |" in markdown
    files = report["files"]
    for key in ("training_curves", "samples", "samples_network", "coverage", "search_history", "search_slices"):
        assert key in files, key
        assert (tmp_path / "final" / files[key]).stat().st_size > 1000, key
    assert set(report["training"]["history"][0]) >= {"val_refined_score", "val_score"}


def test_a_max_lr_caps_the_chosen_rate_and_the_report_and_model_say_so(tmp_path, make_experiment):
    from search.finalize import finalize

    folder = make_experiment(tmp_path / "search")
    chosen, said = load_experiment(folder).config.lr, []
    cap = chosen / 2
    report = finalize(
        load_experiment(folder), tmp_path / "final", samples=4, progress=False, log=said.append, max_lr=cap
    )
    assert report["config"]["lr"] == cap == load_checkpoint(tmp_path / "final" / "model.pt")["config"]["lr"]
    assert f"finalize: the chosen learning rate {chosen:.3g} capped at {cap:g} (--max-lr)" in said
    row = [d for d in report["differences"] if d["what"] == "learning rate"]
    assert row == [{"what": "learning rate", "search": chosen, "final": cap, "same": False, "source": "--max-lr"}]
    assert f"| learning rate | {chosen} | {cap} | **differs** |" in (tmp_path / "final" / "report.md").read_text()
    # a cap above the chosen rate, or none, trains as searched
    for name, above in (("above", chosen * 2), ("none", None)):
        report = finalize(
            load_experiment(folder), tmp_path / name, samples=4, progress=False, log=said.append, max_lr=above
        )
        assert report["config"]["lr"] == chosen
        assert "learning rate" not in {d["what"] for d in report["differences"]}
    assert len([line for line in said if "--max-lr" in line]) == 1


def test_the_study_plots_are_optunas_on_the_saved_study(tmp_path, make_experiment):
    from optuna.trial import TrialState

    from search.driver.study import load_study
    from search.finalize.plots import plot_study

    study = load_study(make_experiment(tmp_path / "exp", trials=12))
    assert [t.state for t in study.trials].count(TrialState.PRUNED) == 4
    assert [t.user_attrs["ray_trial_id"] for t in study.trials][:2] == ["trial_000", "trial_001"]
    files, skipped = plot_study(study, tmp_path / "plots", objective="val_score")
    assert set(files) == {"history", "intermediate", "slices", "importances"}, skipped
    for file in files.values():
        _decodes((tmp_path / "plots" / file).read_bytes())


def test_the_best_trial_rule():
    """The one rule the search and finalize both use (search.trials.best_trial): a diverged trial's
    placeholder score never wins, full-length trials come first."""

    from search.trials import best_trial

    table = pd.DataFrame(
        {
            "trial_id": ["early", "diverged", "full", "unscored"],
            "score": [0.9, 2.0, 0.5, float("nan")],
            "stop_reason": ["asha", "diverged", "finished", "finished"],
            "status": ["TERMINATED"] * 4,
        }
    )
    assert best_trial(table, "max")["trial_id"] == "full"
    assert best_trial(table[table.trial_id != "full"], "max")["trial_id"] == "early"
    assert best_trial(table[table.trial_id.isin(["diverged", "unscored"])], "max") is None
