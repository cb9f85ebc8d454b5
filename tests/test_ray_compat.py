"""search/driver/compat against the installed Ray: every internal it names is there and does what it says.

Offline and quick (no Ray started): the first tests to read after a Ray upgrade.
"""

from __future__ import annotations

import inspect
import re

import numpy as np
import optuna
import pytest
import ray
from packaging.requirements import Requirement
from ray import tune

from search.driver import compat as ray_compat


def test_pyproject_allows_the_installed_ray_and_only_the_checked_minor(repo):
    lines = re.findall(r'^\s*"(ray\[[^"]*)",', (repo / "pyproject.toml").read_text(), flags=re.M)
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
    with pytest.raises(ray_compat.RayCompatError, match=r"object\._ot_trials is gone in Ray .*compat"):
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


def test_tensorboard_writers_and_summaries_are_reached(tmp_path):
    from ray.tune.logger import TBXLoggerCallback
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata as hparams_metadata
    from tensorboardX import SummaryWriter
    from tensorboardX.summary import hparams

    callback = TBXLoggerCallback()
    assert ray_compat.trial_writers(callback) == {}
    assert ray_compat.trial_results(callback) == {}
    writer = SummaryWriter(logdir=str(tmp_path))
    ray_compat.add_summaries(writer, hparams(hparam_dict={"lr": 0.1}, metric_dict={"score": 1.0}))
    writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    assert hparams_metadata.parse_session_start_info_plugin_data(start).hparams["lr"].number_value == 0.1


def test_a_trials_error_text_and_the_restored_search_generator(tmp_path):
    from ray.tune.experiment import Trial
    from ray.tune.search import SearchGenerator

    assert ray_compat.trial_error_text(Trial("__fake", stub=True)) == ""  # no error file: ''
    assert {"restore_from_dir", "is_finished"} <= set(dir(SearchGenerator))
    assert isinstance(inspect.getattr_static(SearchGenerator, "total_samples"), property)


def test_optunas_journal_lock_and_file_are_reached(tmp_path):
    from optuna.storages.journal import JournalFileBackend

    backend = JournalFileBackend(str(tmp_path / "j.log"))
    assert ray_compat.journal_file(backend) == str(tmp_path / "j.log")
    with ray_compat.journal_lock(backend):
        pass


def test_a_failed_restore_is_recorded_not_raised():
    import logging

    recorder = ray_compat.restore_failures(fresh=True)
    logger = logging.getLogger(ray_compat.TUNE_CONTROLLER_LOGGER)
    try:
        raise ValueError("experiment_state-x.json: bad json\nmore")
    except ValueError:
        logger.exception(f"{ray_compat.RESTORE_FAILED}.")
    assert recorder.first == "experiment_state-x.json: bad json"
    assert ray_compat.restore_failures().first == recorder.first  # read again, not forgotten
    assert ray_compat.restore_failures(fresh=True).first is None


def test_the_time_budgets_end_is_recorded_as_tunes_stopper_says_it():
    from ray.tune.stopper import TimeoutStopper

    recorder = ray_compat.time_budget_ends(fresh=True)
    stopper = TimeoutStopper(0.001)
    stopper.stop_all()
    import time

    time.sleep(0.01)
    assert stopper.stop_all()
    assert recorder.first.startswith(ray_compat.TIMEOUT_REACHED)


def test_a_trials_pickled_error_is_never_unpickled(tmp_path):
    from ray.tune.experiment import Trial
    from ray.tune.result_grid import ResultGrid

    assert "trial.get_pickled_error() or trial.get_error()" in inspect.getsource(ResultGrid._populate_exception)
    ray_compat.never_unpickle_trial_errors()
    assert Trial.get_pickled_error(object()) is None  # whatever error.pkl the storage holds


LOADED: list[str] = []


def _record_a_load():
    LOADED.append("ran")


class _Ran:
    """A pickle that records, when loaded, that it ran."""

    def __reduce__(self):
        return (_record_a_load, ())


def test_state_files_are_checked_as_tune_reads_them(tmp_path):
    import pickle

    from ray.tune.execution import tune_controller
    from ray.tune.impl import tuner_internal
    from ray.tune.search import SearchGenerator, search_generator
    from ray.tune.search.optuna import OptunaSearch
    from ray.tune.utils import util

    # the readers entry 17 wraps are the ones Tune's restore calls
    assert "pickle.loads(f.readall())" in inspect.getsource(tuner_internal.TunerInternal._restore_from_path_or_uri)
    assert "_loads_with_cloudpickle(f.readall())" in inspect.getsource(tune_controller.TuneController.resume)
    searcher = OptunaSearch(space={"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1)}, metric="l", mode="min")
    SearchGenerator(searcher).save_to_dir(str(tmp_path), session_str="x")
    (tmp_path / "searcher-state-x.pkl").write_bytes(pickle.dumps(_Ran()))
    seen = []

    def refuse_pickles(file, data):
        seen.append(file)
        if file.endswith(".pkl"):
            raise ValueError(f"{file}: not signed")

    LOADED.clear()
    with ray_compat.checked_state_reads(refuse_pickles), pytest.raises(ValueError, match=r"searcher-state-x\.pkl"):
        SearchGenerator(OptunaSearch()).restore_from_dir(str(tmp_path))
    assert seen == ["search_gen_state-x.json", "searcher-state-x.pkl"]
    assert LOADED == []  # refused before it was unpickled
    with ray_compat.checked_state_reads(refuse_pickles), pytest.raises(ValueError, match=r"tuner\.pkl"):
        tuner_internal.pickle.loads(pickle.dumps(_Ran()))
    assert LOADED == []
    # inside another check (a search reading its own searcher state) the innermost check is the one applied
    with ray_compat.checked_state_reads(lambda file, data: None):
        with ray_compat.checked_state_reads(refuse_pickles), pytest.raises(ValueError, match=r"tuner\.pkl"):
            tuner_internal.pickle.loads(pickle.dumps(_Ran()))
        assert LOADED == []
        tuner_internal.pickle.loads(pickle.dumps(_Ran()))
    assert LOADED == ["ran"]
    LOADED.clear()
    # outside the context Ray's own readers are back
    assert search_generator._load_newest_checkpoint is util._load_newest_checkpoint
    assert tuner_internal.pickle.loads(pickle.dumps(_Ran())) is None
    assert LOADED == ["ran"]


def test_a_forgiven_failure_is_one_less_for_tunes_retry_rule():
    from ray.tune.experiment import Trial

    trial = Trial("__fake", stub=True, max_failures=1)
    trial.run_metadata.num_failures = 2  # what Trial.handle_error counts, one per failure
    assert "self.run_metadata.num_failures += 1" in inspect.getsource(Trial.handle_error)
    assert not trial.should_recover()
    ray_compat.forgive_failure(trial)
    assert trial.num_failures == 1
    assert trial.should_recover()


def test_a_new_search_generator_numbers_on_after_the_earlier_trials():
    from ray.tune.experiment import Experiment
    from ray.tune.search import SearchGenerator
    from ray.tune.search.optuna import OptunaSearch

    from search.driver.extend import ContinuedSearch

    space = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1)}
    searcher = OptunaSearch(space=space, metric="l", mode="min", sampler=optuna.samplers.RandomSampler(seed=0))
    assert {"counter", "total_samples"} <= set(SearchGenerator(searcher).get_state())  # the keys entry 19 moves
    generator = ContinuedSearch(searcher, done=5)
    generator.add_configurations(Experiment("x", tune.with_parameters(lambda config: None), num_samples=2))
    assert generator.total_samples == 7
    tags = [generator.next_trial().experiment_tag.split("_", 1)[0] for _ in range(2)]
    assert tags == ["6", "7"]  # trial numbers go on after the five earlier ones
    assert generator.is_finished()
    assert generator.next_trial() is None


def test_experiment_state_trial_ids_are_read_as_json_not_unpickled():
    import json

    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

    # the layout entry 20 reads is the one TuneController writes: one Trial.get_json_state() per trial
    assert '"trial_data": list(self._get_trial_checkpoints().values())' in inspect.getsource(TuneController.save_to_dir)
    assert "trial.get_json_state()" in inspect.getsource(TuneController._get_trial_checkpoints)
    trials = [Trial("__fake", stub=True, trial_id=tid) for tid in ("aaaa0001", "aaaa0002")]
    state = json.dumps({"trial_data": [t.get_json_state() for t in trials], "runner_data": {}}).encode()
    assert ray_compat.state_trial_ids(state) == ["aaaa0001", "aaaa0002"]
    assert ray_compat.state_trial_ids(state[:40]) is None  # cut short by a crash: passed over
    with pytest.raises(ray_compat.RayCompatError, match="entry 20"):
        ray_compat.state_trial_ids(b'{"trial_data": [["{}"]]}')


def test_the_searcher_state_leaves_out_only_the_trials():
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(
        space={"x": optuna.distributions.FloatDistribution(0, 1)},
        metric="m",
        mode="min",
        sampler=optuna.samplers.RandomSampler(),
    )
    searcher.suggest("t1")
    state = ray_compat.searcher_state(searcher)
    assert set(searcher.__dict__) - set(state) == {"_ot_trials", "_completed_trials"}
    assert "self.__dict__.copy()" in inspect.getsource(OptunaSearch.save)  # what Ray pickles, and restores
    assert "self.__dict__.update(save_object)" in inspect.getsource(OptunaSearch.restore)


def test_optunas_journal_offsets_start_at_line_zero(tmp_path):
    from optuna.storages.journal import JournalFileBackend

    backend = JournalFileBackend(str(tmp_path / "j.log"))
    assert {"_log_number_offset": backend._log_number_offset} == ray_compat.journal_offsets_reset()


def test_tpes_internals_are_reached_and_have_the_signatures_overridden():
    from optuna.samplers import TPESampler

    params = {
        "infer_relative_search_space": ["study", "trial"],
        "_get_internal_repr": ["trials", "search_space", "study"],
        "_get_params": ["trial", "study"],
        "_sample": ["study", "trial", "search_space"],
        "_build_parzen_estimator": ["study", "search_space", "trials", "handle_below"],
        "_compute_acquisition_func": ["samples", "mpe_below", "mpe_above"],
    }
    for name, expected in params.items():
        assert list(inspect.signature(getattr(TPESampler, name)).parameters)[1:] == expected, name
    sampler = TPESampler(group=True)
    for name in ("_group", "_search_space_group", "_rng", "_gamma", "_constant_liar", "_n_ei_candidates"):
        assert hasattr(sampler, name), name
    groups = ray_compat.group_decomposition()
    groups.add_distributions({"a": optuna.distributions.FloatDistribution(0, 1)})
    assert [list(space) for space in groups.search_spaces] == [["a"]]
    pruned_key, infeasible_key = ray_compat.tpe_rank_keys()
    study = optuna.create_study()
    trial = study.ask()
    trial.report(0.5, 3)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert pruned_key(study.trials[0], study) == (-3, 0.5)
    assert infeasible_key(study.trials[0]) == 0
    assert ray_compat.tpe_default_gamma()(100) == 10


def test_tpes_log_ndtr_is_looked_up_when_called():
    from optuna.samplers._tpe import _truncnorm

    assert "_log_ndtr(" in inspect.getsource(_truncnorm._log_gauss_mass)
    assert "_log_ndtr(" in inspect.getsource(_truncnorm.ppf)
    ray_compat.use_tpe_log_ndtr(_truncnorm._log_ndtr)  # what is there (Optuna's, or the project's after a first use)
    assert ray_compat.tpe_log_ndtr(np.array([0.0]))[0] == np.log(0.5)


def test_an_existing_trial_is_found_again(tmp_path):
    study = optuna.create_study()
    study.ask()
    trial = ray_compat.running_trial(study, study.trials[0])
    trial.report(1.0, 1)
    study.tell(trial, 2.0)
    assert study.trials[0].value == 2.0
    assert study.trials[0].intermediate_values == {1: 1.0}


def test_tensorboards_checksums_are_the_same_in_c():
    import tensorboardX.record_writer as tensorboardx_writer
    from tensorboard.compat.tensorflow_stub import pywrap_tensorflow

    data = [b"", b"x", bytes(range(256)) * 50, np.random.default_rng(0).bytes(100_000)]
    pure = [pywrap_tensorflow.crc_finalize(pywrap_tensorflow.crc_update(pywrap_tensorflow.CRC_INIT, d)) for d in data]
    ray_compat.use_fast_crc32c()
    assert [pywrap_tensorflow.crc32c(d) for d in data] == pure
    assert [tensorboardx_writer.crc32c(d) for d in data] == pure
    assert "u32(crc32c(data))" in inspect.getsource(pywrap_tensorflow.masked_crc32c)  # looked up when called
    assert "u32(crc32c(data))" in inspect.getsource(tensorboardx_writer.masked_crc32c)
