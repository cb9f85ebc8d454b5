"""search/finalize.py in-process: reading an experiment folder, retraining, the report's plots.

The scripts themselves (subprocesses, real files) are tested in test_scripts.py.
"""

import io
import math

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from cvae.config import Config
from cvae.data import DataSpec, make_dataset
from cvae.functions import FunctionPair
from cvae.plots import figure_to_png, plot_coverage, plot_training_curves, plot_trials
from cvae.train import load_checkpoint, load_model
from search.finalize import FinalizeError, load_config_file, load_experiment, retrain, save_model

FUNCTIONS = ["cos(49*x0 + 42*x1)", "cos(56*x0 + 63*x1)"]
TINY = dict(model="mlp", hidden=32, latent_dim=4, batch_size=64, epochs=2, lr=3e-3, val_samples=4)


def make_experiment(
    root, trials=6, finished=True, best=True, train_size=256, val_conditions=6, objective="score", study=True
):
    """A search experiment folder as the search writes it: the two YAMLs, results.csv and the Optuna journal.

    objective refined_score adds val_refine_steps 2 to the fixed values (as search/configs/laptop.yaml does).
    """
    root.mkdir(parents=True, exist_ok=True)
    fixed = {k: v for k, v in TINY.items() if k != "epochs"}
    if objective == "refined_score":
        fixed["val_refine_steps"] = 2
    search = {
        "functions": FUNCTIONS,
        "data": {"train_size": train_size, "val_conditions": val_conditions, "seed": 0},
        "search": {"num_samples": trials, "objective": objective},
        "asha": {"max_t": 2, "grace_period": 1, "reduction_factor": 2},
        "fixed": fixed,
        "space": {
            "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
            "head": {"type": "choice", "values": ["points", "lines"]},
            "beta": {"type": "uniform", "low": 0.1, "high": 2.0},
        },
    }
    (root / "search_config.yaml").write_text(yaml.safe_dump(search, sort_keys=False))
    rng = np.random.default_rng(0)
    rows = []
    for i in range(trials):
        config = Config(
            **{
                **fixed,
                "epochs": TINY["epochs"],
                "lr": float(10 ** rng.uniform(-4, -2)),
                "head": ["points", "lines"][i % 2],
                "beta": float(rng.uniform(0.1, 2.0)),
            }
        ).to_dict()
        config["functions"] = "; ".join(config["functions"])  # as search/results.py writes it
        reason = ["finished", "asha", "finished", "asha", "diverged", "finished"][i % 6] if finished else "error"
        score = {"diverged": -1.0, "error": float("nan")}.get(reason, float(rng.uniform(0, 1.5)))
        rows.append(
            {
                "trial_id": f"trial_{i:03d}",
                "status": "ERROR" if reason == "error" else "TERMINATED",
                "stop_reason": reason,
                "epochs": 1 if reason == "asha" else 2,
                "node": "10.0.0.1",
                "score": score,
                "best_score": score,
                "metric": "val_refined_score" if objective == "refined_score" else "val_score",
                **{f"config/{k}": v for k, v in config.items()},
            }
        )
    pd.DataFrame(rows).to_csv(root / "results.csv", index=False)
    if best:
        values = Config(**{**fixed, "epochs": TINY["epochs"], "head": "lines"}).to_dict()
        (root / "best_config.yaml").write_text(yaml.safe_dump(values))
    if study:
        _journal(root, rows, search["space"])
    return root


def _journal(root, rows, space):
    """The search's Optuna study, written through Optuna's own API: ASHA-stopped trials PRUNED, the rest COMPLETE."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from search.study import open_storage

    distributions = {
        "lr": FloatDistribution(space["lr"]["low"], space["lr"]["high"], log=True),
        "head": CategoricalDistribution(space["head"]["values"]),
        "beta": FloatDistribution(space["beta"]["low"], space["beta"]["high"]),
    }
    study = optuna.create_study(study_name=root.name, storage=open_storage(root, create=True), direction="maximize")
    for row in rows:
        state = {"asha": "PRUNED", "error": "FAIL"}.get(row["stop_reason"], "COMPLETE")
        finite = math.isfinite(row["score"])
        study.add_trial(
            optuna.trial.create_trial(
                params={k: row[f"config/{k}"] for k in distributions},
                distributions=distributions,
                value=row["score"] if state == "COMPLETE" else None,
                state=optuna.trial.TrialState[state],
                intermediate_values={row["epochs"]: row["score"]} if finite else {},
                user_attrs={"ray_trial_id": row["trial_id"]},
            )
        )


def _decodes(png: bytes):
    image = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    return image


# --- the experiment folder ---


def test_load_experiment_reads_config_data_and_best_trial(tmp_path):
    folder = make_experiment(tmp_path / "exp")
    experiment = load_experiment(folder)
    assert experiment.config.head == "lines" and experiment.config.epochs == 2
    assert experiment.data == DataSpec(train_size=256, val_conditions=6, seed=0)
    assert experiment.params == ["lr", "head", "beta"]
    results = pd.read_csv(folder / "results.csv")
    full = results[results["stop_reason"] == "finished"]  # the search prefers full-length trials
    assert experiment.best_trial["trial_id"] == full.loc[full["score"].idxmax(), "trial_id"]
    assert experiment.finished_trials == 5 and experiment.mode == "max"  # the diverged one does not count


@pytest.mark.parametrize(
    "damage, message",
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
def test_a_broken_experiment_fails_with_one_clear_line(tmp_path, damage, message):
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


def test_a_bare_config_file_is_accepted_and_a_search_file_refused(tmp_path):
    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump({**TINY, "functions": FUNCTIONS}))
    experiment = load_config_file(path, {"train_size": 128, "val_conditions": 3})
    assert experiment.config.hidden == 32 and experiment.data.train_size == 128 and experiment.results is None
    make_experiment(tmp_path / "exp")
    with pytest.raises(FinalizeError, match="search file, not one configuration"):
        load_config_file(tmp_path / "exp" / "search_config.yaml")


# --- retraining and the model file ---


def test_retraining_is_seeded_and_the_model_loads_without_unpickling_code(tmp_path):
    config = Config(**{**TINY, "epochs": 1})
    train, val = DataSpec(train_size=128, val_conditions=3).build(FunctionPair())
    first = retrain(config, train, val, "cpu", progress=False)
    second = retrain(config, train, val, "cpu", progress=False)
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    path = save_model(first, tmp_path / "model.pt")
    state = load_checkpoint(path)  # weights_only=True
    assert set(state) == {"config", "model", "history", "epoch", "status"} and state["epoch"] == 1
    model = load_model(path)
    y = val[1][:2]
    assert torch.allclose(model.decode(torch.zeros(2, 4), y), first.model.eval().decode(torch.zeros(2, 4), y))


# --- plots ---


def test_plot_trials_handles_categories_log_ranges_and_missing_scores(tmp_path):
    results = pd.read_csv(make_experiment(tmp_path / "exp") / "results.csv")
    results.loc[0, "best_score"] = math.nan
    results.loc[1, "status"] = "ERROR"
    _decodes(figure_to_png(plot_trials(results, score="best_score", params=["lr", "head", "beta"])))
    _decodes(figure_to_png(plot_trials(results, score="score", mode="min")))  # every varying config/ column


def test_plot_training_curves_and_coverage_degrade_gracefully():
    _decodes(figure_to_png(plot_training_curves([{"epoch": 1, "loss": 1.0, "kld": 0.1, "x_loss": 0.2, "y_loss": 0.7}])))
    functions = FunctionPair(("x0 + x1", "x0 * x1"))
    x, _ = make_dataset(2, FunctionPair(), seed=1)
    _decodes(figure_to_png(plot_coverage(x[:, None], functions(x), functions)))


# --- the report ---


def test_finalize_on_a_refined_score_experiment_reports_the_refined_regime_first(tmp_path):
    from search.finalize import finalize

    folder = make_experiment(tmp_path / "refined", objective="refined_score")
    report = finalize(load_experiment(folder), tmp_path / "final", samples=6, progress=False, log=lambda *a: None)
    assert report["objective"]["name"] == "refined_score" and report["objective"]["metric"] == "val_refined_score"
    labels = [r["label"] for r in report["regimes"]]
    assert labels[0] == "network + refinement (K=6, 2 LM steps)" == report["objective"]["regime"], labels
    assert report["regimes"][0]["objective"] and not any(r["objective"] for r in report["regimes"][1:])
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
    assert bold and "network + refinement (K=6, 2 LM steps)" in bold[0]
    assert "3 finished, 2 stopped by ASHA (2 at epoch 1), 1 diverged, 0 errored" in markdown
    assert "| training rows | 256 | 256 | same |" in markdown
    files = report["files"]
    for key in ("training_curves", "samples", "samples_network", "coverage", "search_history", "search_slices"):
        assert key in files and (tmp_path / "final" / files[key]).stat().st_size > 1000, key
    assert set(report["training"]["history"][0]) >= {"val_refined_score", "val_score"}


def test_the_study_plots_are_optunas_on_the_saved_study(tmp_path):
    from optuna.trial import TrialState

    from search.study import load_study, plot_study

    study = load_study(make_experiment(tmp_path / "exp", trials=12))
    assert [t.state for t in study.trials].count(TrialState.PRUNED) == 4
    assert [t.user_attrs["ray_trial_id"] for t in study.trials][:2] == ["trial_000", "trial_001"]
    files, skipped = plot_study(study, tmp_path / "plots", objective="val_score")
    assert set(files) == {"history", "intermediate", "slices", "importances"}, skipped
    for file in files.values():
        _decodes((tmp_path / "plots" / file).read_bytes())
