"""A real search on a local 2-CPU Ray: the smoke config, 6 tiny trials x up to 4 epochs, run as a user runs it."""

import functools
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cvae.config import Config
from cvae.functions import FunctionPair
from cvae.train import Trainer
from search.driver.storage import Storage
from search.driver.trainable import train_trial
from search.driver.tuner import make_tuner, trial_settings
from search.spec import load_search_config
from search.trials import read_results

pytestmark = pytest.mark.slow
CONFIG_KEYS = list(Config.model_fields)
BOXES = set("\u2500\u2502\u250c\u2510\u2514\u2518\u251c\u2524\u252c\u2534\u253c\u256d\u256e\u256f\u2570")


@pytest.fixture(scope="module")
def console(tmp_path_factory, smoke, repo):
    """The installed `twobirds-tune` command on the smoke search: its own local Ray, its console captured."""
    storage = tmp_path_factory.mktemp("runs")
    command = shutil.which("twobirds-tune", path=str(Path(sys.executable).parent))
    assert command, "twobirds-tune is not installed beside this Python (pip install -e .)"
    started = time.perf_counter()
    done = subprocess.run(
        [command, "--config", str(smoke), "--name", "smoke", "--storage", str(storage)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(f"smoke search: {time.perf_counter() - started:.1f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return storage / "smoke", done.stdout + done.stderr


@pytest.fixture(scope="module")
def experiment(console):
    return console[0]


@pytest.fixture(scope="module")
def spec(smoke):
    return load_search_config(smoke)


@pytest.fixture(scope="module")
def table(experiment):
    return read_results(experiment / "results.csv")


def test_every_trial_is_in_the_results_table(experiment, table, spec, smoke):
    assert experiment.is_dir()
    assert (experiment / "search_config.yaml").read_text() == smoke.read_text()
    parquet = pd.read_parquet(experiment / "results.parquet")
    assert len(table) == len(parquet) == spec.search.num_samples == 6
    assert table["trial_id"].is_unique
    assert set(table["trial_id"]) == set(parquet["trial_id"])
    for column in ["trial_id", "status", "stop_reason", "epochs", "node", "score", "best_score"]:
        assert column in table, column
        assert column in parquet, column
    assert all(f"config/{key}" in parquet for key in CONFIG_KEYS)
    assert (table["status"] == "TERMINATED").all(), table[["trial_id", "status", "error"]]
    assert set(table["stop_reason"]) <= {"finished", "asha"}
    assert parquet["node"].astype(bool).all()
    assert parquet["node_id"].astype(bool).all()
    assert (table["best_score"] >= table["score"]).all()  # maximised objective
    # each trial folder holds one progress row per epoch it ran
    for row in table.itertuples():
        assert row.run.startswith("t0")
        assert row.run.endswith(row.trial_id)
        progress = pd.read_csv(experiment / row.run / "progress.csv")
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
    import optuna
    from optuna.samplers import TPESampler
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    # Optuna's own API on the experiment folder's journal, the study named after the experiment
    storage = JournalStorage(JournalFileBackend(str(experiment / "optuna.journal")))
    assert optuna.get_all_study_names(storage) == ["smoke"]
    study = optuna.load_study(study_name="smoke", storage=storage, sampler=TPESampler())
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
    # each Optuna trial names its Ray trial and its TensorBoard run (= trial folder)
    rows = table.set_index("trial_id")
    assert sorted(t.user_attrs["ray_trial_id"] for t in trials) == sorted(rows.index)
    for t in trials:
        row = rows.loc[t.user_attrs["ray_trial_id"]]
        assert t.user_attrs["tensorboard_run"] == row["run"]
        assert (experiment / row["run"]).is_dir()
        assert t.params["lr"] == pytest.approx(row["config/lr"])
        if row["stop_reason"] == "asha":
            assert t.state == TrialState.PRUNED, (t.number, t.state)
            assert t.last_step == row["epochs"] < spec.max_t  # pruned at the rung where ASHA stopped it
        else:
            assert t.state == TrialState.COMPLETE, (t.number, t.state)
            assert t.last_step == spec.max_t
            assert t.value == pytest.approx(row["score"])
    assert sum(t.state == TrialState.PRUNED for t in trials) == (table["stop_reason"] == "asha").sum() >= 1


def test_tensorboard_finds_scalars_hparams_and_images_in_one_run_per_trial(experiment, table):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata as hparams_metadata

    runs = {p.parent for p in experiment.rglob("events.out.tfevents.*")}
    assert runs == {experiment / run for run in table["run"]}  # no second `images` run per trial
    for row in table.itertuples():
        events = EventAccumulator(str(experiment / row.run), size_guidance={"images": 0, "scalars": 0})
        events.Reload()
        scalars = events.Tags()["scalars"]
        for tag in ("val/score", "val/valid_frac", "val/coverage_norm", "train/loss", "train/kld", "train/y_loss"):
            assert tag in scalars, tag
        assert not any(t.startswith("ray/") or "training_iteration" in t or "time_total_s" in t for t in scalars)
        assert [e.step for e in events.Scalars("val/score")] == list(range(1, row.epochs + 1))
        assert events.Scalars("val/score_last")[-1].value == pytest.approx(row.score)
        assert events.Scalars("val/score_best")[-1].value == pytest.approx(row.best_score)
        assert events.Scalars("time/epochs")[-1].value == row.epochs
        start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        session = hparams_metadata.parse_session_start_info_plugin_data(start)
        assert session.hparams["stop_reason"].string_value == row.stop_reason
        shown = events.Images("samples")  # the sample plots, in the same run as the scalars
        assert shown[0].step == 1
        assert shown[0].width > 100


def test_the_console_is_one_line_per_trial_without_boxes(console, table):
    _, text = console
    lines = text.splitlines()
    assert len(lines) <= 60, text
    assert not BOXES & set(text), text
    assert "/tmp/ray" not in text
    assert "ray/session_" not in text
    assert "WARNING" not in text, text
    ended = [line for line in lines if line.startswith("[") and "/6] t0" in line]
    assert len(ended) == 6, text
    for row in table.itertuples():
        (line,) = [line for line in ended if row.trial_id in line]
        if row.stop_reason == "asha":
            assert f"stopped by ASHA at epoch {row.epochs}" in line, line
        else:
            assert f"finished {row.epochs} epochs" in line, line
    asha = (table["stop_reason"] == "asha").sum()
    assert f"{(table['stop_reason'] == 'finished').sum()} finished, {asha} stopped by ASHA" in text


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
    data = spec.data.replace(train_size=64).build(FunctionPair(config.functions))
    result = Trainer(config, *data, device="cpu").fit(epochs=1)
    assert result["epochs"] == 1


def _crash_once_after_epoch_2(marker: str, row: dict) -> None:
    """train_trial's after_report: fail right after epoch 2's report, once (the marker file remembers)."""
    if row["epoch"] == 2 and not Path(marker).exists():
        Path(marker).touch()
        raise RuntimeError("injected failure after epoch 2")


def test_a_failed_trial_is_retried_from_its_checkpoint(ray_local, spec, tmp_path):
    from ray import tune

    one = spec.with_overrides(num_samples=1)
    data = spec.data.build(FunctionPair(spec.functions))
    marker = str(tmp_path / "failed-once")
    trainable = tune.with_parameters(
        train_trial,
        data=data,
        settings={
            "base": one.base_config(),
            "metric": one.metric,
            "max_t": one.max_t,
            "image_epochs": [],
            "checkpoint_every": 1,
        },
        after_report=functools.partial(_crash_once_after_epoch_2, marker),
    )
    trainable = tune.with_resources(trainable, {"cpu": 1})
    grid = make_tuner(one, trainable, "retry", Storage(tmp_path / "runs")).fit()
    result = grid[0]
    assert Path(marker).exists()
    assert result.error is None
    rows = result.metrics_dataframe
    assert list(rows["epoch"]) == [1, 2, 3, 4]  # not 1, 2, 1, 2, 3, 4: the retry continued
    assert list(rows["iterations_since_restore"]) == [1, 2, 1, 2]


class _Crashes:
    """train_trial's after_report: fail right after the given epochs report, each once (or, every_time, each time
    they report); every crash leaves a file in `folder`, so the count survives the trial's processes."""

    def __init__(self, folder: Path, epochs: tuple[int, ...], every_time: bool = False):
        self.folder, self.epochs, self.every_time = str(folder), epochs, every_time
        folder.mkdir()

    def __call__(self, row: dict) -> None:
        epoch, done = row["epoch"], Path(self.folder)
        if epoch in self.epochs and (self.every_time or not (done / f"epoch-{epoch}").exists()):
            (done / f"epoch-{epoch}").touch()
            (done / f"crash-{len(list(done.glob('crash-*')))}").touch()
            raise RuntimeError(f"injected failure after epoch {epoch}")

    def count(self) -> int:
        return len(list(Path(self.folder).glob("crash-*")))


def _fit(spec, tmp_path, name: str, crashes: _Crashes, checkpoint_every: int):
    from ray import tune

    one = spec.with_overrides(num_samples=1, max_failures=1)
    trainable = tune.with_parameters(
        train_trial,
        data=spec.data.build(FunctionPair(spec.functions)),
        settings={**trial_settings(one), "image_epochs": [], "checkpoint_every": checkpoint_every},
        after_report=crashes,
    )
    return make_tuner(one, tune.with_resources(trainable, {"cpu": 1}), name, Storage(tmp_path / "runs")).fit()[0]


def test_only_failures_without_progress_use_up_the_retries(ray_local, spec, tmp_path):
    # three failures, each further on than the last: max_failures=1 does not end the trial
    crashes = _Crashes(tmp_path / "progressing", epochs=(1, 2, 3))
    result = _fit(spec, tmp_path, "progressing", crashes, checkpoint_every=1)
    assert crashes.count() == 3
    assert result.error is None
    epochs = list(result.metrics_dataframe["epoch"])
    # each retry went on from its last checkpoint: no epoch twice, to the end (the result of a process killed
    # just after reporting can be lost in flight, so [1, 2, 4] happens too)
    assert epochs == sorted(set(epochs))
    assert epochs[-1] == 4
    # a crash loop at epoch 3 (restarted from epoch 2 each time): the first failure followed
    # progress, the next two got no further, and the second of those is beyond max_failures=1
    crashes = _Crashes(tmp_path / "loop", epochs=(3,), every_time=True)
    result = _fit(spec, tmp_path, "loop", crashes, checkpoint_every=2)
    assert crashes.count() == 3
    assert result.error is not None
