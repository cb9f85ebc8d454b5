"""TrialBoard writes each result's scalars as one TensorBoard event: TensorBoard's own reader sees every tag."""

from __future__ import annotations

import copy

import pytest

from search.driver.callbacks import TrialBoard


def test_each_result_is_one_event_with_every_scalar(ray_local, tmp_path):
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment import Trial
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="board")
    trial = Trial("t", config={"lr": 0.01}, evaluated_params={"lr": 0.01}, storage=copy.copy(storage), stub=True)
    board = TrialBoard("val_score", "max", 3)
    for epoch in (1, 2, 3):
        result = {"val_score": 0.1 * epoch, "loss": 2.0 / epoch, "seconds": 1.5, "epoch": epoch, "pid": 7}
        board.on_trial_result(iteration=epoch, trials=[trial], trial=trial, result=dict(result, done=epoch == 3))
        trial.update_last_result(result)
    board.on_trial_complete(iteration=3, trials=[trial], trial=trial)
    events = EventAccumulator(trial.local_path, size_guidance={"scalars": 0})
    events.Reload()
    assert [(e.step, round(e.value, 6)) for e in events.Scalars("val/score")] == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx([2.0, 1.0, 2.0 / 3])
    assert [e.step for e in events.Scalars("time/seconds")] == [1, 2, 3]
    assert not any(t.startswith("ray/") or t == "other/pid" for t in events.Tags()["scalars"])
    assert events.Scalars("val/score_best")[-1].value == pytest.approx(0.3)  # HParams' metrics at the end
