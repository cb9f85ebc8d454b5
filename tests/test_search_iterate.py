"""The loop on real searches: a smoke search, --more on it, a new search warm-started from it, the two compared.

One test, three small searches (the commands run as a user runs them, each its own process and local Ray).
"""

import json

import pytest
from optuna.trial import TrialState

from search.driver import trust
from search.driver.storage import Storage
from search.driver.study import load_study
from search.driver.warm_start import FROM
from search.trials import read_results

pytestmark = pytest.mark.slow


def tune(run_script, *args):
    done = run_script("tune", *args, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def numbers(folder) -> list[int]:
    """The trial numbers of the experiment's trial folders (t<number>_...)."""
    return sorted(int(p.name.split("_", 1)[0][1:]) for p in folder.glob("t*_*") if p.is_dir())


def test_more_extends_the_search_and_warm_start_learns_from_it(tmp_path, smoke, run_script, run_main):
    storage, a = tmp_path, tmp_path / "A"
    tune(run_script, "--config", smoke, "--name", "A", "--storage", storage, "--num-samples", "3")
    first = {p.name: (p / "result.json").read_text() for p in a.glob("t*_*")}
    assert numbers(a) == [1, 2, 3]

    console = tune(run_script, "--name", "A", "--storage", storage, "--more", "2")
    assert "[2/2] t05_" in console or "[2/2] t04_" in console
    table = read_results(a / "results.csv")
    assert len(table) == 5
    assert table["trial_id"].is_unique
    assert numbers(a) == [1, 2, 3, 4, 5]  # no trial folder, run name or number reused
    assert {p.name: (p / "result.json").read_text() for p in a.glob("t*_*") if p.name in first} == first
    study = load_study(a)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]  # one study, continued: TPE saw the first three
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert {t.user_attrs["ray_trial_id"] for t in study.trials} == set(table["trial_id"])
    assert {t.user_attrs["tensorboard_run"] for t in study.trials} == set(table["run"])
    trust.verify(Storage(storage), "A")  # a later --resume accepts the folder: every state file is signed

    journal = (a / "optuna.journal").read_bytes()
    console = tune(run_script, "--config", smoke, "--name", "B", "--storage", storage, "--num-samples", "2",
                   "--warm-start", a)  # fmt: skip
    assert "warm start: 5 trials taken from 1 earlier experiment" in console
    assert "2 start points tried already: not run again" in console
    assert (a / "optuna.journal").read_bytes() == journal  # read, never written
    warm = json.loads((tmp_path / "B" / "warm_start.json").read_text())
    assert warm["taken"] == 5
    b = load_study(tmp_path / "B")
    assert [t.user_attrs[FROM] for t in b.trials if FROM in t.user_attrs] == [str(a.resolve())] * 5
    assert len(read_results(tmp_path / "B" / "results.csv")) == 2  # its own trials only

    done = run_main("compare", a, tmp_path / "B", "--out", tmp_path / "compare", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert [(e["name"], e["trials"], e["warm_started"]) for e in summary["experiments"]] == [("A", 5, 0), ("B", 2, 5)]
    assert (tmp_path / "compare" / "compare.png").read_bytes()[:4] == b"\x89PNG"
