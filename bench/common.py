"""Shared helpers for the benchmarks: machine line, markdown tables, RESULT lines, small Ray searches.

Every benchmark prints a markdown table and ends with one line
``RESULT <name> <value> goal <goal> met|missed``.
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
SMOKE = ROOT / "search" / "configs" / "smoke.yaml"
_STARTED = None  # the LocalRay start_ray started


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f} (1/5 min)"


def machine(extra: str = "") -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    return (
        f"# {os.cpu_count()} cores {cpu}, torch {torch.__version__}, python {platform.python_version()}, "
        f"{load()}{', ' + extra if extra else ''}"
    )


def spread(values) -> tuple[float, float, float]:
    values = list(values)
    return min(values), statistics.median(values), max(values)


def fmt(value, digits: int = 2) -> str:
    if isinstance(value, str):
        return value
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def result(name: str, value, goal: str, met: bool) -> str:
    shown = value if isinstance(value, str) else f"{value:.3f}"
    line = f"RESULT {name} {shown} goal {goal} {'met' if met else 'missed'}"
    print(line, flush=True)
    return line


def pickle_by_value(module_name: str) -> None:
    """Ship a benchmark module's trial functions to Ray workers by value: bench/ is not on their path."""
    if module_name != "__main__":
        from ray import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[module_name])


def failed(grid) -> None:
    """Stop the benchmark (one line) when a trial errored: its numbers would not mean what they say."""
    errors = [r.error for r in grid if r.error is not None]
    if errors:
        raise SystemExit(f"error: {len(errors)} of {len(grid)} trials failed; the first: {errors[0]!r:.300}")


def start_ray(num_cpus: int = 2, num_gpus: int | None = None):
    """A local Ray as a search starts it (search/driver/local_ray.py: 127.0.0.1, private temp folder and token,
    this checkout on the workers' PYTHONPATH); the seconds it took to start."""
    from search.driver.compat import loopback_only

    loopback_only()  # before ray is first imported
    import ray

    from search.driver.local_ray import start

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    global _STARTED
    if ray.is_initialized():  # e.g. the tests run several benchmarks on one Ray
        return 0.0
    started = time.perf_counter()
    kwargs = {} if num_gpus is None else {"num_gpus": num_gpus}
    _STARTED = start(num_cpus=num_cpus, log_to_driver=False, logging_level="ERROR", **kwargs)
    return time.perf_counter() - started


def stop_ray() -> None:
    """Shut down the Ray that start_ray started (never one the caller already held)."""
    global _STARTED
    if _STARTED:
        _STARTED.stop()
        _STARTED = None


def spec_from(changes: dict):
    """A validated SearchSpec: smoke.yaml with sections replaced/updated by `changes`."""
    from search.spec import parse_search_config

    raw = yaml.safe_load(SMOKE.read_text())
    raw = copy.deepcopy(raw)
    for section, value in changes.items():
        if isinstance(value, dict) and isinstance(raw.get(section), dict) and section not in ("space", "fixed"):
            raw[section].update(value)
        else:
            raw[section] = value
    return parse_search_config(raw)


def run_project_search(
    spec, data=None, storage: str | None = None, name: str = "bench", reuse_actors=None, trainable=None
):
    """The project's Tuner (OptunaSearch/TPE + ASHA, checkpoints, images) on a running Ray.

    Returns (ResultGrid, wall seconds, fit start time as time.time()).
    """
    from cvae.functions import FunctionPair
    from search.driver.storage import Storage
    from search.driver.tuner import make_trainable, make_tuner

    data = data if data is not None else spec.data.build(FunctionPair(spec.functions))
    trainable = trainable or make_trainable(spec, data)
    storage = Storage(storage or tempfile.mkdtemp(prefix="bench-"))
    kwargs = {} if reuse_actors is None else {"reuse_actors": reuse_actors}
    tuner = make_tuner(spec, trainable, name, storage, **kwargs)
    wall0, started = time.time(), time.perf_counter()
    grid = tuner.fit()
    return grid, time.perf_counter() - started, wall0


def histories(grid) -> list:
    """Each trial's per-epoch results as a DataFrame (columns epoch, timestamp, val_score, seconds, ...)."""
    frames = []
    for res in grid:
        df = res.metrics_dataframe
        if df is not None and len(df):
            frames.append(df.sort_values("epoch").reset_index(drop=True))
    return frames
