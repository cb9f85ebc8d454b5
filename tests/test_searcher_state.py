"""The searcher's saved state stays the same size as trials finish, and a restore finds its trials in the journal.

The project's searcher as `run_search` builds it (make_searcher: wide space, TPE, the Optuna journal), fed
results as Tune calls it, without Ray; the restore is Tune's: a searcher from the pickled Tuner, then `restore`.
"""

from __future__ import annotations

import pickle

from optuna.trial import TrialState

from search.driver.compat import optuna_study
from search.driver.searcher import PruningOptunaSearch
from search.driver.storage import Storage
from search.driver.study import load_study
from search.driver.tuner import make_searcher
from search.spec import load_search_config


def result(epoch: int, value: float, done: bool = False) -> dict:
    return {"val_score": value, "epoch": epoch, "training_iteration": epoch, "done": done, "experiment_tag": "1_x"}


def finish(searcher, trial_id: str, epochs: int, max_t: int) -> None:
    searcher.suggest(trial_id)
    for epoch in range(1, epochs + 1):
        searcher.on_trial_result(trial_id, result(epoch, 0.1 * epoch))
    searcher.on_trial_complete(trial_id, result(epochs, 0.1 * epochs, done=epochs < max_t))


def test_the_state_is_saved_without_the_trials_and_restored_from_the_journal(repo, tmp_path):
    spec = load_search_config(repo / "search" / "configs" / "wide.yaml")
    max_t = spec.max_t
    searcher = make_searcher(spec, "exp", Storage(str(tmp_path)))
    for i in range(8):
        finish(searcher, f"a{i}", epochs=3 if i % 2 else max_t, max_t=max_t)
    searcher.suggest("run1")
    searcher.on_trial_result("run1", result(1, 0.5))
    searcher.suggest("run2")
    searcher.save(str(tmp_path / "early.pkl"))
    for i in range(30):
        finish(searcher, f"b{i}", epochs=3, max_t=max_t)
    snapshot = tmp_path / "snapshot.pkl"
    searcher.save(str(snapshot))  # Tune's last snapshot before the driver is killed
    early, late = (tmp_path / "early.pkl").stat().st_size, snapshot.stat().st_size
    assert abs(late - early) < 512, (early, late)  # 30 more finished trials, the same state
    assert "_ot_trials" not in pickle.loads(snapshot.read_bytes())
    # the driver runs on a little after the snapshot: the journal gets ahead of it
    searcher.on_trial_complete("run1", result(1, 0.5, done=True))  # closed: PRUNED at epoch 1
    searcher.suggest("orphan")  # suggested, never run
    optuna_study(searcher).ask()  # killed between Optuna's ask and the Ray trial id's write: no id, never run

    restored = PruningOptunaSearch(max_t=max_t)  # as Tune unpickles it from tuner.pkl
    restored.restore(str(snapshot))
    for epoch in (1, 2):  # Tune runs run1 again from its snapshot: what it reports is not needed any more
        restored.on_trial_result("run1", result(epoch, 9.0))
    restored.on_trial_complete("run1", result(2, 9.0, done=True))
    for epoch in range(1, max_t + 1):  # run2 was running at the snapshot: it goes on
        restored.on_trial_result("run2", result(epoch, 0.02 * epoch))
    restored.on_trial_complete("run2", result(max_t, 0.02 * max_t, done=True))
    restored.suggest("next")
    trials = {t.user_attrs.get("ray_trial_id"): t for t in load_study(tmp_path / "exp").trials}
    assert trials["run1"].state == TrialState.PRUNED
    assert trials["run1"].intermediate_values == {1: 0.5}
    assert trials["run2"].state == TrialState.COMPLETE
    assert trials["run2"].value == 0.02 * max_t
    assert trials["orphan"].state == TrialState.FAIL
    assert trials[None].state == TrialState.FAIL
    assert trials["next"].state == TrialState.RUNNING
    assert sum(t.state == TrialState.RUNNING for t in trials.values()) == 1
    # and it saves again, as small
    restored.save(str(tmp_path / "after.pkl"))
    assert abs((tmp_path / "after.pkl").stat().st_size - late) < 512
