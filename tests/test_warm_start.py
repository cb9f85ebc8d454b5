"""--warm-start's rules on real journals, and the flags of an iterated search refused in one line before Ray starts.

The earlier experiments are written as a search writes them: search_config.yaml beside an Optuna journal whose
trials were suggested and told through the project's own searcher (PruningOptunaSearch), labelled by
search.driver.study. No Ray is started.
"""

import copy
import json

import optuna
import pytest
import yaml
from optuna.samplers import RandomSampler
from optuna.trial import TrialState

from search.driver import warm_start
from search.driver.preflight import search_changes
from search.driver.searcher import PruningOptunaSearch
from search.driver.storage import Storage
from search.driver.study import close_running, label_study, load_study, open_storage
from search.driver.tuner import make_searcher
from search.spec import parse_search_config

GAUSSIAN = {"latent": "gaussian", "beta": 1.0, "wy": 1.0, "optimizer": "Adam"}
CATEGORICAL = {"latent": "categorical", "beta": 1.0, "wy": 1.0, "optimizer": "Adam", "components": 8}
# (values, per-epoch scores, how it ended) of the earlier experiment's trials; smoke's budget is 4 epochs
TRIALS = [
    ({**GAUSSIAN, "lr": 1e-3}, [0.1, 0.2, 0.3, 0.4], "complete"),
    ({**CATEGORICAL, "lr": 3e-3}, [0.2, 0.3, 0.5, 0.6], "complete"),
    ({**CATEGORICAL, "lr": 2e-2, "components": 12}, [0.05], "pruned"),
    ({**GAUSSIAN, "lr": 5e-4}, [0.1, 0.15], "pruned"),
    ({**GAUSSIAN, "lr": 2e-3}, [0.1], "error"),
    ({**CATEGORICAL, "lr": 1e-3}, [0.1], "running"),
]


@pytest.fixture(scope="module")
def raw(smoke):
    """smoke.yaml as a dict, without its start points."""
    return {**yaml.safe_load(smoke.read_text()), "start_points": []}


def write_experiment(folder, raw, trials=TRIALS):
    """An experiment folder as a search leaves it: its search file and its journal, told through the searcher.
    A failed trial is closed FAIL as a finished search closes it; a "running" one is left open (a killed search)."""
    spec = parse_search_config(raw)
    folder.mkdir(parents=True)
    (folder / "search_config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    searcher = PruningOptunaSearch(
        space=spec.optuna_space(),
        metric=spec.metric,
        mode=spec.mode,
        points_to_evaluate=[values for values, _, _ in trials],
        sampler=RandomSampler(seed=0),
        storage=open_storage(folder, create=True, fsync=False),
        study_name=folder.name,
        max_t=spec.max_t,
    )
    label_study(searcher.study, spec, str(folder))
    ended = [(n, scores, end) for n, (_, scores, end) in enumerate(trials) if end != "running"]
    running = [(n, scores, end) for n, (_, scores, end) in enumerate(trials) if end == "running"]
    for number, scores, end in ended + running:  # the queue gives the values in order: keep the numbers apart
        trial_id = f"trial{number:03d}"
        searcher.suggest(trial_id)
        for epoch, score in enumerate(scores, start=1):
            searcher.on_trial_result(trial_id, {spec.metric: score, "training_iteration": epoch, "epoch": epoch})
        if end == "running":
            continue
        last = {spec.metric: scores[-1], "training_iteration": len(scores), "epoch": len(scores), "done": True}
        searcher.on_trial_complete(trial_id, {**last, "experiment_tag": f"{number + 1}_x"}, error=end == "error")
        if number == ended[-1][0]:  # the search ends: its errored trials closed FAIL
            errored = [f"trial{n:03d}" for n, _, e in ended if e == "error"]
            close_running(folder, known=[f"trial{n:03d}" for n, _, _ in ended], errored=errored)
    return folder


def changed(raw, **edits):
    """A copy of the search file with sections edited: {"space.lr.high": 1e-2, "space.wy": None, ...}."""
    new = copy.deepcopy(raw)
    for path, value in edits.items():
        *parents, key = path.split("__")
        node = new
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(key)
        else:
            node[key] = value
    return parse_search_config(new)


@pytest.fixture(scope="module")
def earlier(tmp_path_factory, raw):
    """runs/A: the six trials above (the last one closed FAIL by the finished search)."""
    return write_experiment(tmp_path_factory.mktemp("runs") / "A", raw)


def test_trials_that_fit_go_in_as_they_are_others_are_skipped_with_their_reason(earlier, raw):
    spec = changed(
        raw,
        space__lr__high=1e-2,  # trial 2 (lr 0.02) falls outside
        space__wy=None,  # no longer searched: dropped
        space__beta=None,
        fixed__beta=0.5,  # now fixed: dropped, the new file's value holds
        fixed__hidden=None,
        space__hidden={"type": "choice", "values": [32, 64]},  # newly searched: A fixed it at 32
    )
    warm = warm_start.prepare([earlier], spec)
    assert [t.user_attrs[warm_start.TRIAL] for t in warm.trials] == [0, 1, 3]
    assert [t.state for t in warm.trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    assert [t.value for t in warm.trials[:2]] == [0.4, 0.6]
    assert warm.trials[2].intermediate_values == {1: 0.1, 2: 0.15}
    assert warm.trials[0].intermediate_values == {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4}
    assert all(t.params["hidden"] == 32 and "wy" not in t.params and "beta" not in t.params for t in warm.trials)
    assert warm.trials[1].params["components"] == 8
    assert "components" not in warm.trials[0].params
    assert warm.skipped == {"lr outside the new space": 1, "failed": 1, "unfinished (running)": 1}
    assert warm.dropped == {"wy": 3, "beta": 3}
    assert warm.trials[0].user_attrs[warm_start.FROM] == str(earlier.resolve())
    assert warm.trials[0].user_attrs[warm_start.RUN].startswith("t01_")
    text = "\n".join(warm.lines())
    assert "3 trials taken from 1 earlier experiment" in text
    assert "skipped 3: 1 lr outside the new space, 1 failed, 1 unfinished (running)" in text
    assert "dropped keys the new space does not search (trials): " in text
    assert "beta 1.0 (now 0.5)" not in text  # beta was searched in A, not fixed: its values are dropped, not a note


def test_a_source_of_another_objective_is_skipped_whole(tmp_path, raw):
    other = {**raw, "search": {**raw["search"], "objective": "train_loss"}}
    loss = write_experiment(tmp_path / "L", other, TRIALS[:2])
    warm = warm_start.prepare([loss], parse_search_config(raw))
    assert warm.trials == []
    assert warm.skipped == {"objective loss, not val_score": 2}


def test_a_conditional_key_needs_a_value_in_the_trial(earlier, raw):
    """components, searched in A only for categorical trials, is searched in every trial of the new space."""
    space = {k: v for k, v in raw["space"].items() if k != "components"}
    spec = changed(raw, space={**space, "components": {"type": "int", "low": 4, "high": 16}})
    warm = warm_start.prepare([earlier], spec)
    assert [t.user_attrs[warm_start.TRIAL] for t in warm.trials] == [1, 2]  # the categorical ones
    assert warm.skipped["no components (not chosen in that trial)"] == 2


def test_a_different_budget_cuts_or_prunes_the_epochs(earlier, raw):
    shorter = warm_start.prepare([earlier], changed(raw, asha__max_t=2, asha__grace_period=1))
    assert [(t.state, t.value) for t in shorter.trials] == [
        (TrialState.COMPLETE, 0.2),  # its first 2 epochs: it reached the new budget
        (TrialState.COMPLETE, 0.3),
        (TrialState.PRUNED, None),
        (TrialState.COMPLETE, 0.15),
    ]
    longer = warm_start.prepare([earlier], changed(raw, asha__max_t=8))
    assert [t.state for t in longer.trials] == [TrialState.PRUNED] * 4
    assert longer.shortened == 2
    assert "asha.max_t 4 (now 8)" in longer.notes[0]


def test_the_new_study_holds_them_with_their_origin_and_the_earlier_journal_is_untouched(earlier, raw, tmp_path):
    spec = changed(raw, start_points=[{**GAUSSIAN, "lr": 1e-3}, {**GAUSSIAN, "lr": 2e-4}])
    before = (earlier / "optuna.journal").read_bytes()
    warm = warm_start.prepare([earlier], spec)
    assert warm.points_tried == 1
    make_searcher(spec, "B", Storage(tmp_path), warm_start=warm)  # as a --warm-start search makes it
    study = optuna.load_study(study_name="B", storage=open_storage(tmp_path / "B"))
    queued = study.get_trials(states=(TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"]["lr"] for t in queued] == [2e-4]  # A tried the other one already
    copies = [t for t in study.trials if warm_start.FROM in t.user_attrs]
    assert [t.user_attrs[warm_start.TRIAL] for t in copies] == [0, 1, 2, 3]
    assert [t.state.name for t in copies] == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED"]
    assert study.user_attrs["warm_start"]["taken"] == 4
    assert (earlier / "optuna.journal").read_bytes() == before
    assert sorted(p.name for p in earlier.iterdir()) == ["optuna.journal", "search_config.yaml"]
    with pytest.raises(warm_start.StudyError, match="read-only"):
        load_study(earlier, read_only=True).set_user_attr("x", 1)

    # a --resume of B killed before Tune saved any state starts it again: the copied trials come along
    (tmp_path / "B" / "warm_start.json").write_text(json.dumps(warm.record()))
    carried = warm_start.carried_over(tmp_path / "B")
    make_searcher(spec, "B", Storage(tmp_path), warm_start=carried)
    assert (tmp_path / "B" / "optuna.journal.before-restart").is_file()
    restarted = optuna.load_study(study_name="B", storage=open_storage(tmp_path / "B"))
    assert [t.user_attrs[warm_start.TRIAL] for t in restarted.trials if warm_start.FROM in t.user_attrs] == [0, 1, 2, 3]
    assert restarted.user_attrs["warm_start"] == study.user_attrs["warm_start"]

    # B in turn read beside A: A's trials, reached twice, go in once
    (tmp_path / "B" / "search_config.yaml").write_text(yaml.safe_dump(raw))
    again = warm_start.prepare([earlier, tmp_path / "B"], spec)
    assert len(again.trials) == 4
    assert again.skipped["reached twice (taken once)"] == 4


def test_finalize_reports_what_the_warm_start_took(earlier, raw, make_experiment, tmp_path, run_main):
    folder = make_experiment(tmp_path / "W", train_size=128)
    record = warm_start.prepare([earlier], changed(raw, space__lr__high=1e-2)).record()
    (folder / "warm_start.json").write_text(json.dumps(record))
    done = run_main("finalize", "--experiment", folder, "--quiet")
    assert done.returncode == 0, done.stderr[-2000:]
    report = (folder / "final" / "report.md").read_text()
    assert "## Warm start" in report
    assert "warm start: 3 trials taken from 1 earlier experiment" in report
    assert json.loads((folder / "final" / "report.json").read_text())["warm_start"]["taken"] == 3


def test_run_settings_are_no_change_of_the_search(raw):
    saved = parse_search_config(raw)
    assert search_changes(saved, changed(raw, search__seed=7, search__num_samples=50)) == []
    assert search_changes(saved, changed(raw, space__lr__high=1e-2, space__wy=None)) == [
        "space.lr changed",
        "space.wy removed",
    ]


# --- one line each, before Ray starts ------------------------------------------------------------------------


@pytest.fixture
def new(tmp_path, smoke):
    """twobirds-tune's arguments for a new smoke search in tmp_path."""
    return ["--config", smoke, "--name", "B", "--storage", tmp_path]


def test_bad_warm_start_folders_are_one_line(one_line_error, new, tmp_path, earlier):
    one_line_error("tune", *new, "--warm-start", tmp_path / "nope", message="nope: no such folder")
    (tmp_path / "file").write_text("x")
    one_line_error("tune", *new, "--warm-start", tmp_path / "file", message="not a folder")
    (tmp_path / "empty").mkdir()
    one_line_error("tune", *new, "--warm-start", tmp_path / "empty", message="no optuna.journal")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "search_config.yaml").write_text((earlier / "search_config.yaml").read_text())
    (damaged / "optuna.journal").write_text('{"op_code": 0, "worker_id": "x"}\nnot json\n{"op_code": 0}\n')
    one_line_error("tune", *new, "--warm-start", damaged, message="optuna.journal is not a readable Optuna journal")
    one_line_error("tune", *new, "--warm-start", earlier, earlier, message="named twice")
    assert not (tmp_path / "B").exists()


def test_iterated_search_flags_that_do_not_go_together(one_line_error, run_main, new, earlier):
    one_line_error("tune", *new, "--resume", "--warm-start", earlier, message="--warm-start with --resume")
    one_line_error("tune", *new, "--more", "2", "--warm-start", earlier, message="--warm-start with --more")
    one_line_error("tune", *new, "--more", "2", "--resume", message="--more with --resume")
    one_line_error("tune", *new, "--more", "2", "--num-samples", "3", message="drop --num-samples")
    refused = run_main("tune", *new, "--more", "0")  # argparse's own error, after its usage line
    assert refused.returncode == 2
    assert "argument --more: must be >= 1, got 0" in refused.stderr


@pytest.fixture
def finished(tmp_path, smoke):
    """A folder that looks like a finished smoke search to preflight: its saved search file and Tune's state."""
    folder = tmp_path / "A"
    folder.mkdir()
    (folder / "search_config.yaml").write_text(smoke.read_text())
    (folder / "tuner.pkl").write_bytes(b"")
    return folder


def test_more_refuses_a_changed_space_and_points_at_warm_start(one_line_error, finished, raw, tmp_path):
    narrower = tmp_path / "narrower.yaml"
    edited = copy.deepcopy(raw)
    edited["space"]["lr"]["high"] = 1e-2
    narrower.write_text(yaml.safe_dump(edited))
    line = one_line_error(
        "tune", "--config", narrower, "--name", "A", "--storage", tmp_path, "--more", "5", message="space.lr changed"
    )
    assert f"--warm-start {finished}" in line


def test_more_needs_a_finished_search_of_this_user(one_line_error, finished, tmp_path):
    one_line_error("tune", "--name", "Z", "--storage", tmp_path, "--more", "5", message="no finished search")
    one_line_error(  # a folder this project did not sign: its Tune state is not read
        "tune", "--name", "A", "--storage", tmp_path, "--more", "5", message="pass --trust to extend it anyway"
    )
