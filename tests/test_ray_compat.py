"""search/ray_compat.py against the installed Ray: every internal it names is there and does what it says.

Offline and quick (no Ray started): the first tests to read after a Ray upgrade.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import optuna
import pytest
import ray
from packaging.requirements import Requirement
from ray import tune

from search.driver import compat as ray_compat

REPO = Path(__file__).resolve().parents[1]


def test_pyproject_allows_the_installed_ray_and_only_the_checked_minor():
    lines = re.findall(r'^\s*"(ray\[[^"]*)",', (REPO / "pyproject.toml").read_text(), flags=re.M)
    (ray_req,) = [Requirement(line) for line in lines]
    assert ray_req.specifier.contains(ray.__version__), (ray_req, ray.__version__)
    assert ray_req.specifier.contains(ray_compat.RAY_CHECKED)
    major, minor = ray_compat.RAY_TESTED_MINOR
    assert not ray_req.specifier.contains(f"{major}.{minor + 1}.0")
    assert not ray_req.specifier.contains(f"{major}.{minor - 1}.0")
    assert tuple(int(x) for x in ray.__version__.split(".")[:2]) == ray_compat.RAY_TESTED_MINOR
    assert f"Ray {ray_compat.RAY_CHECKED}" in ray_compat.__doc__


def test_optuna_search_state_is_reached(tmp_path):
    from ray.tune.search.optuna import OptunaSearch

    def space(trial):
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)

    searcher = OptunaSearch(space=space, metric="loss", mode="min", sampler=optuna.samplers.RandomSampler(seed=0))
    config = searcher.suggest("t1")
    assert set(config) == {"lr"}
    trials = ray_compat.optuna_trials(searcher)
    assert isinstance(trials["t1"], optuna.Trial)
    assert isinstance(ray_compat.optuna_study(searcher), optuna.Study)
    searcher.on_trial_complete("t1", result={"loss": 1.0})
    assert "t1" in ray_compat.completed_trials(searcher)
    assert ray_compat.optuna_study(searcher).trials[0].state == optuna.trial.TrialState.COMPLETE


def test_a_missing_internal_says_which_and_where():
    with pytest.raises(ray_compat.RayCompatError, match=r"object\._ot_trials is gone in Ray .*ray_compat"):
        ray_compat.optuna_trials(object())


def test_progress_metrics_reach_tunes_console():
    from ray.tune.progress_reporter import _detect_progress_metrics

    trainable = tune.with_resources(tune.with_parameters(lambda config, data=None: None, data=1), {"cpu": 1})
    ray_compat.set_progress_metrics(trainable, ("score", "epoch"))
    assert list(_detect_progress_metrics(trainable)) == ["score", "epoch"]


def test_loopback_patch_replaces_the_function_rays_cli_calls():
    import ray._private.services as services
    import ray.scripts.scripts as scripts

    # looked up on the module at call time, so replacing the module's attribute reaches it
    assert "services.resolve_ip_for_localhost(" in inspect.getsource(scripts)
    assert ray_compat.keep_loopback("127.0.0.1") == ray_compat.keep_loopback("localhost") == "127.0.0.1"
    assert ray_compat.keep_loopback("10.1.2.3") == services.resolve_ip_for_localhost("10.1.2.3") == "10.1.2.3"


def test_named_internals_exist():
    import ray._private.ray_constants as constants
    import ray._private.state
    from ray.train.constants import _get_ray_train_session_dir  # noqa: F401
    from ray.tune.experiment import Trial

    assert constants.ENABLE_RAY_CLUSTERS_ENV_VAR == ray_compat.LOOPBACK_SWITCH
    assert callable(ray._private.state.actors)
    assert "_temp_dir" in inspect.getsource(ray.init)
    assert isinstance(inspect.getattr_static(Trial, "local_experiment_path"), property)
    import ray.tune.execution.tune_controller as controller

    assert controller.logger.name == ray_compat.TUNE_CONTROLLER_LOGGER
    assert ray_compat.RESTORE_FAILED in inspect.getsource(controller)
    for name in ray_compat.QUIET_LOGGERS:
        module = __import__(name, fromlist=["logger"])
        assert module.logger.name == name, name


def test_launcher_validation_is_rays_own():
    with pytest.raises(Exception, match=re.escape("provider")):
        ray_compat.validated_launcher_config({"cluster_name": "x", "max_workers": 1})
