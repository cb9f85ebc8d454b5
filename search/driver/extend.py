"""More trials for a finished search (`twobirds-tune --name A --storage runs --more 20`): a new Tuner run in the
same experiment folder.

Ray Tune cannot add trials to a finished experiment: `Tuner.restore` brings back the search generator with its
trial count spent and refuses a changed search (ray-project/ray #30223). Raising that count inside the restored
state would mean rewriting Tune's pickles. Instead an extension is a Tuner run of its own, in the same folder:

- the Optuna study continues: the searcher opens the same journal and OptunaSearch creates its study with
  `load_if_exists=True` (public behaviour), so TPE sees every earlier trial and Optuna's numbers go on;
- trial numbers continue: `ContinuedSearch` is Tune's search generator counting from the trials already in the
  folder (compat entry 19), so experiment tags, trial folders and TensorBoard runs go on from t<N+1>, and its
  sample count covers them (a later --resume's count of trials left stays right);
- Tune writes its own `experiment_state-<time>.json` beside the earlier runs'; `runs` reads each run's trials
  once, newest first, and search/driver/results.py builds results.csv from all of them.

The searcher is wrapped as Tune wraps it for `max_concurrent_trials`: SearchGenerator(ConcurrencyLimiter(...)).
A later --resume restores the newest run (the extension) from its own signed state files.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pyarrow.fs
from ray.tune import ExperimentAnalysis
from ray.tune.search import ConcurrencyLimiter, SearchGenerator

from .compat import continue_numbering, state_trial_ids

STATE_FILES = "experiment_state-*.json"  # one per Tuner run (and per --resume of it), named by its start time


class ContinuedSearch(SearchGenerator):
    """Tune's search generator whose trial numbers (and sample count) start after `done` earlier trials."""

    def __init__(self, searcher, done: int):
        super().__init__(searcher)
        self.done = done

    def add_configurations(self, experiments):
        super().add_configurations(experiments)  # a new run: the count starts at 0, then moves past `done`
        continue_numbering(self, self.done)


def continued_search(searcher, done: int, max_concurrent: int) -> ContinuedSearch:
    """The searcher as Tune wraps it for max_concurrent_trials, numbering from `done` + 1."""
    return ContinuedSearch(ConcurrencyLimiter(searcher, max_concurrent=max_concurrent), done)


def state_files(experiment_path: str, storage_filesystem=None) -> list[tuple[str, list[str]]]:
    """Each Tuner run's experiment state file in the folder (its path or URI), newest first, with the ids of its
    trials, read as plain JSON (nothing unpickled); a file cut short is left out."""
    if storage_filesystem is None and "://" in experiment_path:
        fs, root = pyarrow.fs.FileSystem.from_uri(experiment_path)
    elif storage_filesystem is None:
        fs, root = pyarrow.fs.LocalFileSystem(), str(Path(experiment_path).resolve())
    else:
        fs, root = storage_filesystem, experiment_path
    selector = pyarrow.fs.FileSelector(root, allow_not_found=True)
    names = sorted(
        (Path(i.path).name for i in fs.get_file_info(selector) if fnmatch.fnmatch(Path(i.path).name, STATE_FILES)),
        reverse=True,  # the names carry the run's start time: newest first
    )
    found = []
    for name in names:
        with fs.open_input_stream(f"{root.rstrip('/')}/{name}") as stream:
            ids = state_trial_ids(stream.readall())
        if ids is not None:  # a file cut short by a crash is passed over, as if Tune had not written it
            found.append((f"{experiment_path.rstrip('/')}/{name}", ids))
    return found


def runs(experiment_path: str, storage_filesystem=None) -> list[tuple[ExperimentAnalysis, set[str] | None]]:
    """Tune's analysis of each run of the experiment that holds trials no newer run has, newest first, with the
    ids of those trials (None: all of them): a single run (and its resumes) gives one, each --more one more."""
    found, seen = [], set()
    for where, ids in state_files(experiment_path, storage_filesystem):
        new = set(ids) - seen
        if not new and found:
            continue  # an earlier snapshot of a run (before a --resume): all its trials are in a newer one
        found.append((ExperimentAnalysis(where, storage_filesystem=storage_filesystem), new))
        seen |= new
    return found or [(ExperimentAnalysis(experiment_path, storage_filesystem=storage_filesystem), None)]


def newest_trials(experiment_path: str, storage_filesystem=None) -> set[str]:
    """The trials of the newest Tuner run in the folder (the extension, after a --more)."""
    files = state_files(experiment_path, storage_filesystem)
    return set(files[0][1]) if files else set()
