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


def make_experiment(root, trials=6, finished=True, best=True, train_size=256, val_conditions=6):
    """A search experiment folder as the search writes it: the two YAMLs and results.csv."""
    root.mkdir(parents=True, exist_ok=True)
    search = {
        "functions": FUNCTIONS,
        "data": {"train_size": train_size, "val_conditions": val_conditions, "seed": 0},
        "search": {"num_samples": trials, "objective": "score"},
        "asha": {"max_t": 2, "grace_period": 1, "reduction_factor": 2},
        "fixed": {k: v for k, v in TINY.items() if k != "epochs"},
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
                **TINY,
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
                "metric": "val_score",
                **{f"config/{k}": v for k, v in config.items()},
            }
        )
    pd.DataFrame(rows).to_csv(root / "results.csv", index=False)
    if best:
        (root / "best_config.yaml").write_text(yaml.safe_dump(Config(**{**TINY, "head": "lines"}).to_dict()))
    return root


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
        ("unknown_key", "unknown config key 'learning_rate'"),
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
