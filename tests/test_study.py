"""search.driver.study and the searcher's journal, without Ray: Optuna's own storage and API on real files."""

import os

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from search.driver.searcher import PruningOptunaSearch
from search.driver.study import load_study, open_storage, writes_together


def _searcher(folder, name="exp"):
    return PruningOptunaSearch(
        space={"lr": FloatDistribution(1e-4, 1e-2, log=True)},
        metric="val_score",
        mode="max",
        storage=open_storage(folder, create=True, fsync=False),  # as the driver writes it
        study_name=name,
        max_t=4,
    )


def test_the_journal_holds_ray_ids_pruned_and_complete_trials(tmp_path):
    searcher = _searcher(tmp_path)
    for trial_id in ("aaaa0001", "aaaa0002"):
        assert "lr" in searcher.suggest(trial_id)
    searcher.on_trial_result("aaaa0001", {"val_score": 0.1, "training_iteration": 1, "epoch": 1})
    searcher.on_trial_complete(
        "aaaa0001", {"val_score": 0.1, "training_iteration": 1, "epoch": 1, "done": True, "experiment_tag": "1_lr=0.1"}
    )
    for epoch in (1, 2, 3, 4):
        searcher.on_trial_result("aaaa0002", {"val_score": 0.2 * epoch, "training_iteration": epoch, "epoch": epoch})
    searcher.on_trial_complete("aaaa0002", {"val_score": 0.8, "training_iteration": 4, "epoch": 4, "done": True})
    study = optuna.load_study(study_name="exp", storage=open_storage(tmp_path))  # a second reader of the file
    assert [t.state for t in study.trials] == [TrialState.PRUNED, TrialState.COMPLETE]
    assert [t.user_attrs["ray_trial_id"] for t in study.trials] == ["aaaa0001", "aaaa0002"]
    assert study.trials[0].user_attrs["tensorboard_run"].startswith("t01_lr=")
    assert study.best_value == 0.8
    assert load_study(tmp_path).study_name == "exp"


def test_a_resumed_searcher_closes_the_killed_drivers_unsaved_suggestion(tmp_path):
    searcher = _searcher(tmp_path)
    searcher.suggest("bbbb0001")
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's snapshot
    searcher.suggest("bbbb0002")  # written to the journal, then the driver is killed before the next snapshot
    restored = _searcher(tmp_path)
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.suggest("bbbb0003")
    states = {t.user_attrs["ray_trial_id"]: t.state for t in load_study(tmp_path).trials}
    assert states == {"bbbb0001": TrialState.RUNNING, "bbbb0002": TrialState.FAIL, "bbbb0003": TrialState.RUNNING}


def test_a_journal_write_that_fills_the_disk_leaves_only_whole_lines(small_disk):
    """The driver's journal on a full disk: the failed append is cut back, and Optuna still reads the file."""
    study = optuna.create_study(study_name="full", storage=open_storage(small_disk, create=True, fsync=False))
    study.enqueue_trial({"x": 0.5})
    (small_disk / "filler").write_bytes(b"0" * (os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize))
    with pytest.raises(OSError, match="No space left"):
        study.set_user_attr("big", "y" * 20_000)  # one journal line longer than the space left
    os.remove(small_disk / "filler")
    study.set_user_attr("after", 1)  # appended after the cut: a line of its own
    reread = optuna.load_study(study_name="full", storage=open_storage(small_disk))
    assert reread.user_attrs == {"after": 1}
    assert len(reread.trials) == 1


def test_a_suggestion_writes_its_lines_under_one_hold_of_the_lock(tmp_path):
    """The driver's suggestion (a line per parameter) holds the journal's lock from its first write to its last,
    and lets it go after; what it wrote is the journal Optuna reads."""
    study = optuna.create_study(study_name="exp", storage=open_storage(tmp_path, create=True, fsync=False))
    lock = tmp_path / "optuna.journal.lock"  # Optuna's symlink lock: present while someone holds it
    with writes_together(study):
        assert lock.is_symlink()
        trial = study.ask()
        with writes_together(study):  # nested: the hold goes on
            trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        trial.suggest_int("depth", 1, 4)
        assert lock.is_symlink()
    assert not lock.is_symlink()
    study.tell(trial, 0.5)
    reread = optuna.load_study(study_name="exp", storage=open_storage(tmp_path))
    assert reread.trials[0].params == trial.params
    assert reread.best_value == 0.5
