"""How many concurrent trials the search driver keeps up with: Tune + OptunaSearch/TPE + ASHA + the journal.

A local Ray with many logical CPUs (`ray.init(num_cpus=K)` on this 2-core machine) runs the project's
Tuner (`search.driver.tuner.make_tuner`: PruningOptunaSearch with its Optuna journal, ASHA, TensorBoard,
console and signing callbacks, experiment-state saves) with K concurrent 1-CPU trials that sleep
instead of training: each reports one result every --interval seconds (1 s) for up to max_t results
(ASHA grace 1, reduction factor 2 stops most early, so new trials are suggested all along).
The trials do no work, so what limits them is the driver. A trial's `tune.report` waits until the
driver has taken its previous result, so a driver that falls behind stretches every trial's
interval: measured are the results/s and suggestions/s the driver sustains, and the median and
90th-percentile interval between a trial's results against the 1 s asked.
Goal: at K = 256 the driver sustains >= 0.9 K results/s (a trial's interval within 1.1 s).

    .venv/bin/python bench/driver_scaling.py                   # K = 64 and 256 (~6 min on 2 cores)
    .venv/bin/python bench/driver_scaling.py --quick           # K = 8 (a test)
    .venv/bin/python bench/driver_scaling.py --concurrency 64 128 256 --seconds 60
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import io
import statistics
import tempfile
import time

import common

common.pickle_by_value(__name__)  # the trial function below reaches the workers even when imported (tests)

GOAL_K, GOAL_FRACTION = 256, 0.9


def sleeping_trial(config, settings=None):
    """A trial that sleeps `interval` s per epoch and reports like the project's (objective, epoch)."""
    import random

    from ray import tune

    rng = random.Random(str(sorted(config.items())))
    for epoch in range(1, settings["max_t"] + 1):
        time.sleep(settings["interval"])
        tune.report({settings["metric"]: rng.random() + 0.01 * epoch, "epoch": epoch, "seconds": settings["interval"]})


def driver_spec(args, concurrency: int):
    return common.spec_from(
        {
            "search": {
                "num_samples": 100000,  # ended by the time budget
                "max_concurrent_trials": concurrency,
                "time_budget_s": args.seconds,
                "tpe_startup_trials": 10,
            },
            "asha": {"max_t": args.max_t, "grace_period": 1, "reduction_factor": 2},
            "start_points": [],
        }
    )


@contextlib.contextmanager
def timing(events: dict):
    """Record when the searcher's calls and Tune's state saves happen (and how long a suggestion and a save
    take) while the block runs; the classes are restored after it."""
    from ray.tune.execution.tune_controller import TuneController

    from search.driver.searcher import PruningOptunaSearch

    def timed(cls, method, record):
        original = getattr(cls, method)

        def wrapper(obj, *a, **k):
            started = time.perf_counter()
            try:
                return original(obj, *a, **k)
            finally:
                record(started, time.perf_counter() - started)

        setattr(cls, method, wrapper)
        return cls, method, original

    undo = [
        timed(PruningOptunaSearch, "on_trial_result", lambda t, s: events["result"].append(t)),
        timed(PruningOptunaSearch, "on_trial_complete", lambda t, s: events["result"].append(t)),
        timed(
            PruningOptunaSearch,
            "suggest",
            lambda t, s: (events["suggest"].append(t), events["suggest_s"].append(s)),
        ),
        timed(TuneController, "save_to_dir", lambda t, s: events["save_s"].append(s)),
    ]
    try:
        yield
    finally:
        for cls, method, original in undo:
            setattr(cls, method, original)


def run(args, concurrency: int):
    from ray import tune

    from search.driver.storage import Storage
    from search.driver.tuner import make_tuner

    spec = driver_spec(args, concurrency)
    settings = {"metric": spec.metric, "max_t": spec.max_t, "interval": args.interval}
    trainable = tune.with_resources(tune.with_parameters(sleeping_trial, settings=settings), {"cpu": 1})
    events = {"result": [], "suggest": [], "suggest_s": [], "save_s": []}
    tuner = make_tuner(spec, trainable, f"driver{concurrency}", Storage(tempfile.mkdtemp(prefix="bench-driver-")))
    started = time.perf_counter()
    with timing(events), contextlib.redirect_stdout(io.StringIO()):
        grid = tuner.fit()
    wall = time.perf_counter() - started
    common.failed(grid)
    return summary(grid, events, started, wall)


def summary(grid, events: dict, started: float, wall: float) -> dict:
    intervals = []
    for res in grid:
        df = res.metrics_dataframe
        if df is not None and len(df) > 1:
            intervals += df["time_this_iter_s"].iloc[1:].tolist()  # between reports, the first (start-up) left out
    # steady state: the second half of the run (every trial slot started, actors reused)
    half = started + wall / 2
    results = [t for t in events["result"] if t >= half]
    suggests = [t for t in events["suggest"] if t >= half]
    window = max(1e-9, (started + wall) - half)
    times = sorted(events["result"])
    peak = max((bisect.bisect_left(times, t + 5) - i for i, t in enumerate(times)), default=0) / 5
    return {
        "trials": len(grid),
        "results_s": len(results) / window,
        "suggest_s": len(suggests) / window,
        "peak_results_s": peak,
        "interval_median": statistics.median(intervals) if intervals else float("nan"),
        "interval_p90": statistics.quantiles(intervals, n=10)[-1] if len(intervals) >= 10 else float("nan"),
        "suggest_ms": 1000 * statistics.median(events["suggest_s"]) if events["suggest_s"] else float("nan"),
        "saves": len(events["save_s"]),
        "save_ms": 1000 * statistics.median(events["save_s"]) if events["save_s"] else float("nan"),
        "wall": wall,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, GOAL_K])
    parser.add_argument("--seconds", type=float, default=120.0, help="time budget of each search")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between a trial's results")
    parser.add_argument("--max-t", type=int, default=8)
    args = parser.parse_args(argv)
    if args.quick:
        args.concurrency, args.seconds = [8], 20.0
    loads, rows, runs = [common.load()], [], {}
    for k in args.concurrency:
        ray_s = common.start_ray(k)
        runs[k] = run(args, k)
        common.stop_ray()
        loads.append(common.load())
        r = runs[k]
        rows.append(
            [
                str(k),
                str(r["trials"]),
                r["results_s"],
                f"{r['results_s'] / (k / args.interval):.2f}",
                r["peak_results_s"],
                r["suggest_s"],
                r["suggest_ms"],
                f"{r['interval_median']:.2f} / {r['interval_p90']:.2f}",
                f"{r['saves']} x {r['save_ms']:.0f} ms",
                f"{ray_s:.1f}",
            ]
        )
    print(
        common.machine(
            f"logical CPUs = concurrent trials {args.concurrency}, trials sleep {args.interval} s per result, "
            f"max_t {args.max_t} (ASHA grace 1, rf 2), {args.seconds:.0f} s per search"
        )
    )
    print(f"# loads during the run: {'; '.join(loads)}")
    common.table(
        [
            "concurrent trials",
            "trials run",
            "results/s (2nd half)",
            "of asked",
            "peak results/s (5 s)",
            "suggestions/s",
            "suggest ms (median)",
            "result interval s (median / p90)",
            "state saves",
            "Ray start s",
        ],
        rows,
    )
    k = max(runs)
    fraction = runs[k]["results_s"] / (k / args.interval)
    goal = f">={GOAL_FRACTION}_at_{GOAL_K}"
    common.result(f"driver_results_fraction_at_{k}", fraction, goal, k >= GOAL_K and fraction >= GOAL_FRACTION)
    return fraction


if __name__ == "__main__":
    main()
