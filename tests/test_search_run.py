"""A real search on a local 2-CPU Ray: the smoke config, 6 tiny trials x up to 4 epochs."""

import dataclasses
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cvae.config import Config
from cvae.functions import FunctionPair
from cvae.train import Trainer
from search import run_search
from search.results import load_study
from search.runner import Storage, make_tuner
from search.space import load_search_config
from tests.conftest import SMOKE

pytestmark = pytest.mark.slow
CONFIG_KEYS = [f.name for f in dataclasses.fields(Config)]


@pytest.fixture(scope="module")
def experiment(ray_local, tmp_path_factory):
    storage = tmp_path_factory.mktemp("runs")
    started = time.perf_counter()
    folder = run_search(SMOKE, "smoke", storage)
    print(f"smoke search: {time.perf_counter() - started:.1f} s")
    return folder


@pytest.fixture(scope="module")
def spec():
    return load_search_config(SMOKE)


@pytest.fixture(scope="module")
def table(experiment):
    return pd.read_csv(experiment / "results.csv")


def test_every_trial_is_in_the_results_table(experiment, table, spec):
    assert experiment.is_dir() and (experiment / "search_config.yaml").read_text() == SMOKE.read_text()
    parquet = pd.read_parquet(experiment / "results.parquet")
    assert len(table) == len(parquet) == spec.search["num_samples"] == 6
    assert table["trial_id"].is_unique and set(table["trial_id"]) == set(parquet["trial_id"])
    for column in ["trial_id", "status", "stop_reason", "epochs", "node", "score", "best_score"]:
        assert column in table and column in parquet, column
    assert all(f"config/{key}" in parquet for key in CONFIG_KEYS)
    assert (table["status"] == "TERMINATED").all(), table[["trial_id", "status", "error"]]
    assert set(table["stop_reason"]) <= {"finished", "asha"}
    assert parquet["node"].astype(bool).all() and parquet["node_id"].astype(bool).all()
    assert (table["best_score"] >= table["score"]).all()  # maximised objective
    # each trial folder holds one progress row per epoch it ran
    for row in table.itertuples():
        progress = pd.read_csv(experiment / f"trial_{row.trial_id}" / "progress.csv")
        assert list(progress["epoch"]) == list(range(1, row.epochs + 1))
        for unweighted in ("kld", "x_loss", "y_loss", "loss", "val_score", "val_valid_frac"):
            assert unweighted in progress


def test_asha_stopped_at_least_one_trial_early(table, spec):
    early = table[table["stop_reason"] == "asha"]
    assert len(early) >= 1
    assert (early["epochs"] < spec.max_t).all()
    assert (table.loc[table["stop_reason"] == "finished", "epochs"] == spec.max_t).all()
    assert (table["stop_reason"] == "finished").any()


def test_optuna_study_holds_tpe_suggestions_and_pruned_early_stops(experiment, table, spec):
    from optuna.samplers import TPESampler
    from optuna.trial import TrialState

    study = load_study(experiment)
    assert isinstance(study.sampler, TPESampler)
    trials = study.trials
    assert len(trials) == len(table)
    # the start points were enqueued in order; all others were suggested by the TPE sampler, inside the space
    starts = len(spec.start_points)
    assert [t.params for t in trials[:starts]] == spec.start_points
    assert sum("fixed_params" not in t.system_attrs for t in trials) == len(trials) - starts
    for t in trials:
        assert all(spec.space[k].contains(v) for k, v in t.params.items())
        searched = {k for k, p in spec.space.items() if p.applies(t.params)}  # each family its own keys
        assert set(t.params) == searched, t.params
    assert {t.params["latent"] for t in trials} == {"gaussian", "categorical"}
    # match Optuna trials to Tune trials by their (unique, float) learning rate
    reason = {round(r["config/lr"], 12): r["stop_reason"] for _, r in table.iterrows()}
    epochs = {round(r["config/lr"], 12): r["epochs"] for _, r in table.iterrows()}
    for t in trials:
        key = round(t.params["lr"], 12)
        if reason[key] == "asha":
            assert t.state == TrialState.PRUNED, (t.number, t.state)
            assert t.last_step == epochs[key] < spec.max_t  # pruned at the rung where ASHA stopped it
        else:
            assert t.state == TrialState.COMPLETE, (t.number, t.state)
            assert t.last_step == spec.max_t
            assert t.value == pytest.approx(table.loc[table["config/lr"].round(12) == key, "score"].item())
    assert sum(t.state == TrialState.PRUNED for t in trials) == (table["stop_reason"] == "asha").sum() >= 1


def test_tensorboard_reads_scalars_hparams_and_images(experiment, table):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    images = 0
    for row in table.itertuples():
        folder = experiment / f"trial_{row.trial_id}"
        events = EventAccumulator(str(folder))
        events.Reload()
        scalars = events.Tags()["scalars"]
        for key in ("val_score", "val_valid_frac", "val_coverage_norm", "loss", "kld", "x_loss", "y_loss"):
            assert f"ray/tune/{key}" in scalars, key
        assert [e.step for e in events.Scalars("ray/tune/val_score")] == list(range(1, row.epochs + 1))
        assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
        plots = EventAccumulator(str(folder / "images"), size_guidance={"images": 0})
        plots.Reload()
        if "samples" in plots.Tags()["images"]:
            shown = plots.Images("samples")
            assert shown[0].step == 1 and shown[0].width > 100
            images += len(shown)
    assert images >= len(table)  # every trial plots epoch 1 at least


def test_best_config_loads_into_the_trainer(experiment, table, spec):
    values = yaml.safe_load((experiment / "best_config.yaml").read_text())
    config = Config.from_dict(values)
    assert config.epochs == spec.max_t
    finished = table[table["stop_reason"] == "finished"]
    best = finished.loc[finished["score"].idxmax()]
    for key in spec.space:
        assert values[key] == pytest.approx(best[f"config/{key}"]) if key != "optimizer" else best[f"config/{key}"]
    for key, value in spec.fixed.items():
        assert values[key] == value
    data = dataclasses.replace(spec.data, train_size=64).build(FunctionPair(config.functions))
    result = Trainer(config, *data, device="cpu").fit(epochs=1)
    assert result["epochs"] == 1


def _flaky_trial(config, data=None, settings=None):
    """train_trial that crashes once, right after reporting epoch 2 (a marker file makes it once)."""
    import types

    from ray import tune

    import search.trainable as trainable

    marker = Path(settings["marker"])

    def report(metrics, checkpoint=None):
        tune.report(metrics, checkpoint=checkpoint)
        if metrics["epoch"] == 2 and not marker.exists():
            marker.touch()
            raise RuntimeError("injected failure after epoch 2")

    proxy = types.SimpleNamespace(**{name: getattr(tune, name) for name in dir(tune) if not name.startswith("_")})
    proxy.report = report
    trainable.tune = proxy  # this trial's worker process only
    trainable.train_trial(config, data=data, settings=settings)


def test_a_failed_trial_is_retried_from_its_checkpoint(ray_local, spec, tmp_path):
    from ray import tune

    one = spec.with_overrides(num_samples=1)
    data = spec.data.build(FunctionPair(spec.functions))
    trainable = tune.with_parameters(
        _flaky_trial,
        data=data,
        settings={
            "base": one.base_config(),
            "metric": one.metric,
            "max_t": one.max_t,
            "image_epochs": [],
            "marker": str(tmp_path / "failed-once"),
        },
    )
    trainable = tune.with_resources(trainable, {"cpu": 1})
    grid = make_tuner(one, trainable, "retry", Storage(tmp_path / "runs")).fit()
    result = grid[0]
    assert (tmp_path / "failed-once").exists() and result.error is None
    rows = result.metrics_dataframe
    assert list(rows["epoch"]) == [1, 2, 3, 4]  # not 1, 2, 1, 2, 3, 4: the retry continued
    assert list(rows["iterations_since_restore"]) == [1, 2, 1, 2]
