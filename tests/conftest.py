"""Shared fixtures: one local Ray per test module (127.0.0.1, no dashboard), scripts run as a user
runs them (a subprocess) or in-process through their main(argv), a search experiment folder as the
search writes it, and the challenge's reference files."""

import contextlib
import importlib
import io
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import settings

# The key that signs experiment folders (search/driver/trust.py): the tests' own, not the user's ~/.config/twobirds.
os.environ.setdefault("TWOBIRDS_CONFIG_DIR", tempfile.mkdtemp(prefix="twobirds-test-config-"))

# Input fuzzing (tests/test_fuzz.py): a few dozen examples a property in the fast tier; --hypothesis-profile=long
# runs 10,000. Each example has 2 s: a bad input must end in its one line quickly.
settings.register_profile("fast", max_examples=40, deadline=2000)
settings.register_profile("long", max_examples=10_000, deadline=2000)
settings.load_profile("fast")

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "search" / "configs" / "smoke.yaml"
SHARED = REPO.parent / "shared" / "twobirds"  # the challenge's reference files, beside the checkout


@pytest.fixture(scope="session")
def repo() -> Path:
    """The checkout's root folder."""
    return REPO


@pytest.fixture(scope="module")
def bench_on_path(repo):
    """bench/ on sys.path, as when a benchmark runs as a script (they import bench/common.py)."""
    folder = str(repo / "bench")
    sys.path.insert(0, folder)
    yield
    sys.path.remove(folder)


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared/twobirds beside the checkout: the challenge's reference files (absent outside the workspace)."""
    return SHARED


@pytest.fixture(scope="session")
def smoke() -> Path:
    """search/configs/smoke.yaml: the smallest real search (6 tiny trials)."""
    return SMOKE


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER") or not config.getoption("numprocesses", default=None):
        # in the process that runs the tests (not pytest-xdist's controller: importing search costs ~3 s, torch),
        # before any test module imports ray: every Ray the tests start listens on 127.0.0.1 only
        from search.driver.compat import loopback_only

        loopback_only()
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:  # pytest-xdist: torch's threads of all workers together no more than the cores
        # (test_train, test_categorical and test_quality on 2 workers and 2 loaded cores: 42-72 s so, 221-255 s
        # with torch's default of 2 threads a worker, whose OpenMP threads spin waiting for each other)
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    config.addinivalue_line("markers", "needs_shared: needs ../shared/twobirds (skipped where it is absent)")


def pytest_runtest_setup(item):
    if item.get_closest_marker("needs_shared") and not (SHARED / "validation_dataset.pt").is_file():
        pytest.skip(f"reference data absent: {SHARED} (only in the project's workspace)")


def _run_script(script: str, *args, timeout: float = 120, env=None) -> subprocess.CompletedProcess:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, f"scripts/{script}.py", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    done.seconds = time.perf_counter() - started
    return done


@pytest.fixture(scope="session")
def run_script():
    """run_script(script, *args, timeout=120, env=None): scripts/<script>.py run as a user would, from
    the checkout; the result carries its wall time in .seconds."""
    return _run_script


# what a user types -> the module whose main(argv) runs it, and the name its error lines start with
COMMANDS = {
    "tune": ("scripts.tune", "twobirds-tune"),  # scripts/tune.py: search.cli.main
    "finalize": ("scripts.finalize", "twobirds-finalize"),
    "generate": ("scripts.generate", "twobirds-generate"),
    "score": ("scripts.score", "twobirds-score"),
    "demo": ("scripts.demo", "twobirds-demo"),
    "compare": ("scripts.compare", "twobirds-compare"),
    "cluster": ("cluster.cli", "python -m cluster"),
}
RAY_STARTED = ("Started a local Ray instance", "Connecting to existing Ray cluster", "ray.init")


@dataclass
class Ran:
    """What a command run in-process left: its exit status, its console, and the time main took."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float


def _run_main(command: str, *args) -> Ran:
    main = importlib.import_module(COMMANDS[command][0]).main
    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    started = time.perf_counter()
    try:
        os.chdir(REPO)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exit:  # argparse: --help, a bad flag
                code = exit.code
    finally:
        os.chdir(here)
    return Ran(code, out.getvalue(), err.getvalue(), time.perf_counter() - started)


@pytest.fixture(scope="session")
def run_main():
    """run_main(command, *args) -> Ran: `command` (scripts/<command>.py, or "cluster" for `python -m cluster`)
    run in-process through its main(argv), from the checkout, its stdout and stderr captured: what the script
    does, without an interpreter (and torch) to start. argparse's exits (--help, a bad flag) give the status."""
    return _run_main


class OneLineError(str):
    """The one stderr line of a failed command, with the whole run beside it (.ran: stdout, seconds)."""

    ran: Ran


@pytest.fixture(scope="session")
def one_line_error():
    """one_line_error(command, *args, message=...) -> the line: run_main(command, *args), then what a user
    must see for bad input: exit status 2, exactly one stderr line `<prog>: error: ...` naming `message`,
    no traceback, and no Ray started."""

    def check(command: str, *args, message: str) -> OneLineError:
        ran = _run_main(command, *args)
        out, err = ran.stdout, ran.stderr
        assert ran.returncode == 2, (ran.returncode, out[-2000:], err[-2000:])
        assert "Traceback" not in err, err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"{COMMANDS[command][1]}: error: "), lines[0]
        assert message in lines[0], lines[0]
        assert not any(marker in out + err for marker in RAY_STARTED), err
        ray = sys.modules.get("ray")
        assert ray is None or not ray.is_initialized(), "the command started Ray"
        line = OneLineError(lines[0])
        line.ran = ran
        return line

    return check


@pytest.fixture(scope="module")
def ray_local():
    """A 2-CPU Ray for the module's tests (started once: Ray takes ~9 s to start on 2 cores), started as a search
    starts its own (private temp folder and token; the process's environment restored after)."""
    ray = pytest.importorskip("ray")
    from search.driver import local_ray

    if ray.is_initialized():
        ray.shutdown()
    started = local_ray.start(num_cpus=2, log_to_driver=False)
    yield ray
    started.stop()


# --- a search experiment folder as the search writes it ------------------------------------------

FUNCTIONS = ["cos(49*x0 + 42*x1)", "cos(56*x0 + 63*x1)"]
TINY = dict(model="mlp", hidden=32, latent_dim=4, batch_size=64, epochs=2, lr=3e-3, val_samples=4)


@pytest.fixture(scope="session")
def tiny_config() -> dict:
    """A Config's values that train in a second (epochs 2)."""
    return dict(TINY, functions=list(FUNCTIONS))


@pytest.fixture(scope="session")
def make_experiment():
    """make_experiment(root, trials=6, ...) -> root: the two YAMLs, results.csv and the Optuna journal."""
    return _make_experiment


def _make_experiment(
    root, trials=6, finished=True, best=True, train_size=256, val_conditions=6, objective="score", study=True
):
    """A search experiment folder as the search writes it: the two YAMLs, results.csv and the Optuna journal.

    objective refined_score adds val_refine_steps 2 to the fixed values (as search/configs/laptop.yaml does).
    """
    import pandas as pd  # here, not at the top: pytest-xdist's controller loads this file and runs no test

    from cvae.config import Config

    root.mkdir(parents=True, exist_ok=True)
    fixed = {k: v for k, v in TINY.items() if k != "epochs"}
    if objective == "refined_score":
        fixed["val_refine_steps"] = 2
    search = {
        "functions": FUNCTIONS,
        "data": {"train_size": train_size, "val_conditions": val_conditions, "seed": 0},
        "search": {"num_samples": trials, "objective": objective},
        "asha": {"max_t": 2, "grace_period": 1, "reduction_factor": 2},
        "fixed": fixed,
        "space": {
            "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
            "head": {"type": "choice", "values": ["points", "lines"]},
            "beta": {"type": "uniform", "low": 0.1, "high": 2.0},
        },
    }
    (root / "search_config.yaml").write_text(yaml.safe_dump(search, sort_keys=False))
    rows = _trial_rows(fixed, trials, finished, objective)
    pd.DataFrame(rows).to_csv(root / "results.csv", index=False)
    if best:
        values = Config(**{**fixed, "epochs": TINY["epochs"], "head": "lines"}).to_dict()
        (root / "best_config.yaml").write_text(yaml.safe_dump(values))
    if study:
        _journal(root, rows, search["space"])
    return root


def _trial_rows(fixed, trials, finished, objective):
    """results.csv's rows for `trials` seeded trials: finished, stopped by ASHA and diverged in turn (or errors)."""
    import numpy as np

    from cvae.config import Config

    rng = np.random.default_rng(0)
    rows = []
    for i in range(trials):
        config = Config(
            **{
                **fixed,
                "epochs": TINY["epochs"],
                "lr": float(10 ** rng.uniform(-4, -2)),
                "head": ["points", "lines"][i % 2],
                "beta": float(rng.uniform(0.1, 2.0)),
            }
        ).to_dict()
        config["functions"] = "; ".join(config["functions"])  # as search/driver/results.py writes it
        reason = ["finished", "asha", "finished", "asha", "diverged", "finished"][i % 6] if finished else "error"
        score = {"diverged": -1.0, "error": float("nan")}.get(reason, float(rng.uniform(0, 1.5)))
        rows.append(
            {
                "trial_id": f"trial_{i:03d}",
                "status": "ERROR" if reason == "error" else "TERMINATED",
                "stop_reason": reason,
                "epochs": 1 if reason == "asha" else 2,
                "node": "10.0.0.1",
                "score": score,
                "best_score": score,
                "metric": "val_refined_score" if objective == "refined_score" else "val_score",
                **{f"config/{k}": v for k, v in config.items()},
            }
        )
    return rows


def _journal(root, rows, space):
    """The search's Optuna study, written through Optuna's own API: ASHA-stopped trials PRUNED, the rest COMPLETE."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from search.driver.study import open_storage

    distributions = {
        "lr": FloatDistribution(space["lr"]["low"], space["lr"]["high"], log=True),
        "head": CategoricalDistribution(space["head"]["values"]),
        "beta": FloatDistribution(space["beta"]["low"], space["beta"]["high"]),
    }
    study = optuna.create_study(study_name=root.name, storage=open_storage(root, create=True), direction="maximize")
    for row in rows:
        state = {"asha": "PRUNED", "error": "FAIL"}.get(row["stop_reason"], "COMPLETE")
        finite = math.isfinite(row["score"])
        study.add_trial(
            optuna.trial.create_trial(
                params={k: row[f"config/{k}"] for k in distributions},
                distributions=distributions,
                value=row["score"] if state == "COMPLETE" else None,
                state=optuna.trial.TrialState[state],
                intermediate_values={row["epochs"]: row["score"]} if finite else {},
                user_attrs={"ray_trial_id": row["trial_id"]},
            )
        )


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs root to mount): a disk that fills up."""
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)]).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield folder
    subprocess.run(["umount", str(folder)])
