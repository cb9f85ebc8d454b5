"""Failure-aware pruning: the signals a trial reports (cvae/signals.py), the decision to stop it
(search.trials.failure, thresholds in the search file's `failures:` section), and a real search in which a
configuration known to collapse is stopped with its reason and recorded as infeasible in the Optuna journal."""

import math

import pytest
import torch
import yaml

from cvae.branches import branches
from cvae.config import Config
from cvae.data import DataSpec, make_dataset
from cvae.functions import FunctionPair
from cvae.lines import lines_from_endpoints
from cvae.signals import condition_gap, prior_entropy
from cvae.train import Trainer
from search.spec import SearchConfigError, parse_search_config
from search.spec.sections import Failures
from search.trials import ended, failure, read_results, stop_reason

# A configuration of the smoke space whose prior p(c | y) collapses onto one or two of its 4 components within
# its 4 epochs (effective components about 1.9, 1.4, 1.2, 1.2 on the smoke data).
COLLAPSES = {"latent": "categorical", "lr": 3.0e-2, "beta": 2.0, "wy": 0.5, "optimizer": "SGD", "components": 4}
LIMITS = Failures().model_dump()


# --- the signals ---


def test_the_condition_gap_tells_samples_of_their_own_condition_from_samples_that_ignore_it():
    functions = FunctionPair()
    x, y = make_dataset(40, functions, 3, "uniform")
    solutions = branches(y, functions, x_true=x)
    # each condition's own exact solutions (its first 5 branches, repeated) against one line for every condition
    own = torch.stack([lines_from_endpoints(b[torch.arange(5) % len(b)].float(), 50) for b in solutions])
    same = x[:1].unsqueeze(1).expand(40, 5, -1, -1)
    gap, se = condition_gap(own, y, functions)
    assert gap > 0.5  # RMSE about 0 on their own condition, about 1 on the others
    assert gap - 2 * se > 0
    blind, blind_se = condition_gap(same, y, functions)
    assert abs(blind) < 2 * blind_se + 1e-3  # about 0: these samples say nothing about their condition
    assert blind + 2 * blind_se < 0.1
    assert all(math.isnan(v) for v in condition_gap(own[:1], y[:1], functions))


def test_prior_entropy_and_effective_components():
    uniform = torch.full((3, 8), -math.log(8))
    assert prior_entropy(uniform) == pytest.approx(math.log(8))
    one = torch.log(torch.tensor([[1.0, 0.0, 0.0, 0.0]]).clamp_min(1e-30))
    assert prior_entropy(one) == pytest.approx(0.0, abs=1e-6)  # exp(0) = 1 effective component


@pytest.mark.parametrize("latent", ["gaussian", "categorical"])
def test_every_validated_epoch_reports_its_failure_signals(latent, tiny_config):
    config = Config(**{**tiny_config, "latent": latent, "components": 6, "epochs": 1})
    train, val = DataSpec(train_size=128, val_conditions=4).build(config)
    row = Trainer(config, train, val).fit()["history"][-1]
    family = ("val_prior_entropy", "val_prior_components") if latent == "categorical" else ("val_kl_per_dim",)
    for key in ("val_condition_gap", "val_condition_gap_se", *family):
        assert math.isfinite(row[key]), (key, row)
    if latent == "categorical":
        assert 1 <= row["val_prior_components"] <= 6
        assert row["val_prior_components"] == pytest.approx(math.exp(row["val_prior_entropy"]))
    else:
        assert 0 <= row["val_kl_per_dim"] <= row["val_kl_max_dim"]


# --- the decision and its words ---


def test_a_trial_stops_when_a_signal_crosses_its_threshold():
    healthy = {
        "epoch": 3,
        "loss": 1.0,
        "val_prior_components": 12.0,
        "val_condition_gap": 0.05,
        "val_condition_gap_se": 0.01,
    }
    assert failure(healthy, LIMITS) is None
    collapsed = {**healthy, "val_prior_components": 1.2}
    assert failure(collapsed, LIMITS) == ("collapsed", "effective components 1.2 < 1.5")
    posterior = {"epoch": 3, "loss": 1.0, "val_kl_max_dim": 1e-5, "val_condition_gap": 0.05, "val_condition_gap_se": 0}
    assert failure(posterior, LIMITS)[0] == "collapsed"
    blind = {**healthy, "val_condition_gap": 0.001, "val_condition_gap_se": 0.001}
    assert failure(blind, LIMITS)[0] == "ignores_condition"
    assert failure({**blind, "epoch": 1}, LIMITS) is None  # an untrained model ignores y too: judged from epoch 2
    noisy = {**blind, "val_condition_gap_se": 0.02}  # a gap measured on few conditions: no evidence either way
    assert failure(noisy, LIMITS) is None
    assert failure({"epoch": 1, "loss": math.inf, "diverged": 1}, LIMITS) == ("diverged", "non-finite loss")
    assert failure(collapsed, {**LIMITS, "prune": False}) is None
    assert failure(collapsed, {**LIMITS, "from_epoch": 4}) is None
    assert failure(collapsed, LIMITS, wy_delay=3) is None  # judged once the whole loss applies
    assert failure({**collapsed, "epoch": 4}, LIMITS, wy_delay=3)[0] == "collapsed"
    assert failure(collapsed, None) is None


def test_the_reason_is_how_the_trial_ended_in_words():
    last = {"done": True, "epoch": 2, "failure": "collapsed", "failure_detail": "effective components 1.2 < 1.5"}
    assert stop_reason("TERMINATED", last, 4) == "collapsed"
    assert ended("TERMINATED", last, 4) == "collapsed at epoch 2 (effective components 1.2 < 1.5)"
    assert ended("TERMINATED", {**last, "failure": "ignores_condition"}, 4).startswith("ignores the condition at")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"min_components": 0.5}, "failures.min_components: must be >= 1, got 0.5"),
        ({"min_condition_gap": -1}, "failures.min_condition_gap: must be >= 0, got -1"),
        ({"from_epoch": 0}, "failures.from_epoch: must be > 0, got 0"),
        ({"prune": "sometimes"}, "failures.prune: expected true or false"),
        ({"min_entropy": 1}, "failures.min_entropy: unknown key; allowed are prune, from_epoch"),
    ],
)
def test_a_bad_threshold_is_one_line_naming_the_key(smoke, section, message):
    raw = yaml.safe_load(smoke.read_text())
    raw["failures"] = section
    with pytest.raises(SearchConfigError) as info:
        parse_search_config(raw)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# --- a real search ---


@pytest.mark.slow
def test_a_collapsing_configuration_is_stopped_and_told_to_tpe_as_infeasible(tmp_path, smoke, run_script):
    from optuna.trial import TrialState

    from search.driver.study import FAILURE_CONSTRAINT, load_study

    raw = yaml.safe_load(smoke.read_text())
    raw["search"].update(num_samples=2, images="none")
    raw["asha"]["grace_period"] = 2  # no rung before the collapse shows
    raw["failures"] = {"prune": True, "from_epoch": 2, "min_components": 2.0}  # off in smoke.yaml
    raw["start_points"] = [COLLAPSES, raw["start_points"][1]]  # the collapse, and the smoke space's own categorical
    path = tmp_path / "collapse.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    # a process, as a user runs it: a search in this one would leave its local Ray's settings behind for other tests
    ran = run_script("tune", "--config", path, "--name", "collapse", "--storage", tmp_path / "runs", timeout=600)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    experiment = tmp_path / "runs" / "collapse"
    table = read_results(experiment / "results.csv")
    collapsed = table[table["config/optimizer"] == "SGD"].iloc[0]
    assert collapsed["stop_reason"] == "collapsed"
    assert collapsed["epochs"] == 2
    assert collapsed["val_prior_components"] < 2.0
    healthy = table[table["config/optimizer"] == "Adam"].iloc[0]
    assert healthy["stop_reason"] == "finished"
    assert f"collapsed at epoch 2 (effective components {collapsed['val_prior_components']:.3g} < 2)" in ran.stdout
    assert "1 collapsed" in ran.stdout  # the summary's count
    hparams = _hparams(experiment / collapsed["run"])  # TensorBoard's own reader
    assert hparams["stop_reason"].string_value == "collapsed"
    study = load_study(experiment)  # through optuna.load_study
    by_ray_id = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    told = by_ray_id[collapsed["trial_id"]]
    assert told.state == TrialState.PRUNED  # stopped before max_t, as ASHA's stops are
    assert told.user_attrs["failure"] == "collapsed"
    assert told.constraints == {FAILURE_CONSTRAINT: 1.0}  # > 0: infeasible, what TPE's split reads
    assert by_ray_id[healthy["trial_id"]].constraints == {}
    assert study.best_trial.number == by_ray_id[healthy["trial_id"]].number  # Optuna skips infeasible trials


def _hparams(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    return metadata.parse_session_start_info_plugin_data(start).hparams
