"""Does a warm start pay? Search A (budget T trials), then search B warm-started from A's journal (budget T),
against a cold search of budget 2T and the cold search of budget T that A itself is.

The cold 2T search has A's TPE seed, so its first T trials are A's (as near as the timing of two concurrent
trials allows): B and the cold search's second half start from the same history, and the comparison is
between warm-starting a new search and having run the first one twice as long. (With another seed the target
would mostly measure where each seed's random start-up landed: docs/benchmarks.md, "Warm start".)

The smoke search file's space (latent family, lr, beta, wy, optimizer, and components for the categorical
family: a conditional space), with data and epochs large enough to learn; no start points; 2 concurrent
1-CPU trials; the project's Tuner (TPE + ASHA) for every search, B through `--warm-start`'s own code
(search.driver.warm_start). Each search's best so far is read from its Optuna journal as twobirds-compare
reads it: the search's own trials, full-budget (COMPLETE) ones as bests. TPE seeds differ per search.

Goal: B reaches the cold 2T search's best score within half of B's budget (trials ended, median over seeds).

    .venv/bin/python bench/warm_start.py [--quick] [--seeds 3] [--trials 30] [--epochs 27] [--rows 20000]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import common

GOAL = 0.5  # of B's budget


def make_spec(args, seed: int, trials: int):
    """smoke.yaml's space at the benchmark's size, TPE seeded with `seed`."""
    return common.spec_from(
        {
            "data": {"train_size": args.rows, "val_conditions": 20},
            "search": {
                "num_samples": trials,
                "max_concurrent_trials": 2,
                "seed": seed,
                "tpe_startup_trials": max(2, args.trials // 4),
                "images": "none",
            },
            "asha": {"max_t": args.epochs, "grace_period": 1, "reduction_factor": 3},
            "fixed": {"model": "mlp", "hidden": 64, "depth": 2, "latent_dim": 4, "batch_size": 128, "val_samples": 10},
            "start_points": [],
        }
    )


def search(spec, data, storage: Path, name: str, warm_from: Path | None = None) -> dict:
    """One search with the project's Tuner (warm-started from `warm_from` when given); its compare entry."""
    from search.driver.files import SEARCH_CONFIG
    from search.driver.storage import Storage
    from search.driver.tuner import make_trainable, make_tuner
    from search.driver.warm_start import prepare
    from search.finalize.compare import read_experiment

    warm = prepare([warm_from], spec) if warm_from is not None else None
    tuner = make_tuner(spec, make_trainable(spec, data), name, Storage(storage), warm_start=warm)
    started = time.perf_counter()
    common.failed(tuner.fit())
    wall = time.perf_counter() - started
    (storage / name / SEARCH_CONFIG).write_text(spec.text)  # what a later --warm-start reads beside the journal
    entry = read_experiment(storage / name)
    entry["wall_s"], entry["taken"] = wall, len(warm.trials) if warm else 0
    return entry


def reached(entry: dict, target: float, maximize: bool) -> tuple[float, float]:
    """(trials ended, seconds of trials) when the search's best first reached `target`; inf if never."""
    for point in entry["curve"]:
        best = point["best"]
        if best is not None and (best >= target - 1e-12 if maximize else best <= target + 1e-12):
            return float(point["trial"]), float(point["seconds"])
    return math.inf, math.inf


def one_seed(args, seed: int, data, root: Path) -> dict:
    """A, B warm-started from A, and the cold 2T search for one seed: their entries and B's time to target."""
    a = search(make_spec(args, seed, args.trials), data, root, f"A{seed}")
    b = search(make_spec(args, seed + 1000, args.trials), data, root, f"B{seed}", warm_from=root / f"A{seed}")
    cold = search(make_spec(args, seed + args.cold_seed, 2 * args.trials), data, root, f"cold2T{seed}")
    maximize = a["mode"] == "max"
    target = cold["best"] if cold["best"] is not None else -math.inf
    return {"A": a, "B": b, "cold2T": cold, "target": target, "B_to_target": reached(b, target, maximize)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=30, help="T: the budget of A and of B, in trials")
    parser.add_argument("--epochs", type=int, default=27)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument(
        "--cold-seed", type=int, default=0, help="the cold 2T search's TPE seed, less A's (default 0: A's own)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.trials, args.epochs, args.rows = 1, 2, 1, 256
    from cvae.functions import FunctionPair

    spec = make_spec(args, 0, args.trials)
    data = spec.data.build(FunctionPair(spec.functions))
    loads, root = [common.load()], Path(tempfile.mkdtemp(prefix="bench-warm-"))
    ray_s = common.start_ray(2)
    runs = []
    for seed in range(args.seeds):
        runs.append(one_seed(args, seed, data, root))
        loads.append(common.load())
    common.stop_ray()
    report(args, runs, loads, ray_s)


def report(args, runs: list[dict], loads: list[str], ray_s: float) -> None:
    """The machine line, the table per seed and search, and the RESULT line."""
    print(
        common.machine(
            f"{args.seeds} seeds, T = {args.trials} trials x up to {args.epochs} epochs, smoke space (mlp 64x2), "
            f"{args.rows} rows, 2 concurrent 1-CPU trials, Ray start {ray_s:.1f} s"
        )
    )
    print(f"# loads during the run: {'; '.join(loads)}")
    rows = []
    for seed, run in enumerate(runs):
        for key, label in (("A", "A = cold T"), ("B", "B = warm from A, T"), ("cold2T", "cold 2T")):
            e = run[key]
            at = (e["best_at"] or {}).get("trial", math.nan)
            best = "n/a" if e["best"] is None else f"{e['best']:.4f}"
            at = "n/a" if math.isnan(at) else str(at)
            rows.append([str(seed), label, str(e["trials"]), str(e["taken"]), best, at, e["wall_s"]])
        first = [p["best"] for p in run["cold2T"]["curve"] if p["trial"] <= args.trials and p["best"] is not None]
        best_first = f"{first[-1]:.4f}" if first else "n/a"
        rows.append([str(seed), "cold 2T, its first T trials", str(args.trials), "0", best_first, "", ""])
        trials, seconds = run["B_to_target"]
        shown = "never" if math.isinf(trials) else f"{trials:.0f}"
        rows.append(
            [str(seed), "B to cold 2T's best", shown, "", f"{run['target']:.4f}", shown, f"{seconds:.0f} (of trials)"]
        )
    common.table(["seed", "search", "trials", "warm trials", "best val_score", "best at trial", "wall s"], rows)
    needed = [run["B_to_target"][0] for run in runs]
    fraction = statistics.median(n / args.trials for n in needed)
    shown = ", ".join("never" if math.isinf(n) else f"{n:.0f}" for n in needed)
    print(f"B's trials to the cold 2T search's best, per seed: {shown} (of T = {args.trials})")
    common.result("warm_start_trials_to_cold_2T_best", fraction, f"<={GOAL}", fraction <= GOAL)


if __name__ == "__main__":
    main()
