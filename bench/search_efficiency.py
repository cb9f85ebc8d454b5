"""Search efficiency: compute (trial-epochs) and wall time to a fixed validation score,
TPE + ASHA (the project's default) vs random search without early stopping (FIFO).

Same space, same trial count, same trainable, 2 concurrent trials, several seeds.
The target is the lowest best score any random-FIFO run reached (so every baseline run reaches it),
unless --target is given. Goals: random compute / TPE+ASHA compute >= 3 (medians over seeds),
and a better best score at equal compute (random's best within the trial-epochs TPE+ASHA used).

    .venv/bin/python bench/search_efficiency.py [--quick] [--seeds 3] [--trials 16] [--epochs 9]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile

import common
import pandas as pd

GOAL = 3.0
PROJECT, RANDOM = "TPE + ASHA (project)", "random + FIFO"
HEADERS = [
    "search",
    "epochs to target (per seed)",
    "median epochs",
    "median s to target",
    "total epochs",
    "wall s",
    "best score (equal trials)",
    "best at TPE+ASHA's compute",
]
SPACE = {
    "head": {"type": "choice", "values": ["points", "lines"]},
    "lr": {"type": "loguniform", "low": 1.0e-4, "high": 3.0e-2},
    "beta": {"type": "loguniform", "low": 1.0e-3, "high": 2.0},
    "wy": {"type": "loguniform", "low": 0.1, "high": 30.0},
    "optimizer": {"type": "choice", "values": ["Adam", "RMSprop", "SGD"]},
    "hidden": {"type": "choice", "values": [32, 64, 128]},
    "latent_dim": {"type": "int", "low": 2, "high": 16, "log": True},
    "batch_size": {"type": "choice", "values": [64, 128, 256]},
}


def make_spec(args, seed: int):
    return common.spec_from(
        {
            "data": {"train_size": args.rows, "val_conditions": 20},
            "search": {
                "num_samples": args.trials,
                "max_concurrent_trials": 2,
                "seed": seed,
                "tpe_startup_trials": max(2, args.trials // 4),
            },
            "asha": {"max_t": args.epochs, "grace_period": 1, "reduction_factor": 3},
            "fixed": {"model": "mlp", "depth": 2, "val_samples": 10},
            "space": SPACE,
            "start_points": [],
        }
    )


def random_fifo(spec, data, seed: int):
    """Random search (Optuna's RandomSampler), every trial to max_t (FIFO), the same trainable."""
    import time

    from optuna.samplers import RandomSampler
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    from search.driver.tuner import CHECKPOINTS_KEPT, make_trainable
    from search.trials import trial_name

    searcher = OptunaSearch(
        space=spec.optuna_space(), metric=spec.metric, mode=spec.mode, sampler=RandomSampler(seed=seed)
    )
    tuner = tune.Tuner(
        make_trainable(spec, data),
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            search_alg=searcher,
            scheduler=FIFOScheduler(),
            num_samples=spec.search.num_samples,
            max_concurrent_trials=2,
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name="random",
            storage_path=tempfile.mkdtemp(prefix="bench-"),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
            sync_config=tune.SyncConfig(sync_artifacts=True),
            verbose=0,
        ),
    )
    wall0, started = time.time(), time.perf_counter()
    grid = tuner.fit()
    return grid, time.perf_counter() - started, wall0


def timeline(grid, wall0) -> pd.DataFrame:
    """Every epoch result of the search in the order it arrived: cumulative epochs, seconds, best so far."""
    rows = pd.concat(common.histories(grid), ignore_index=True).sort_values("timestamp")
    out = pd.DataFrame(
        {
            "epochs": range(1, len(rows) + 1),
            "seconds": (rows["timestamp"] - wall0).clip(lower=0).to_numpy(),
            "best": rows["val_score"].cummax().to_numpy(),
        }
    )
    return out


def to_target(line: pd.DataFrame, target: float) -> tuple[float, float]:
    hit = line[line["best"] >= target - 1e-12]
    if hit.empty:
        return math.inf, math.inf
    return float(hit["epochs"].iloc[0]), float(hit["seconds"].iloc[0])


def best_within(line: pd.DataFrame, epochs: float) -> float:
    part = line[line["epochs"] <= epochs]
    return float(part["best"].iloc[-1]) if len(part) else math.nan


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--target", type=float, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.trials, args.epochs, args.rows = 1, 2, 1, 256
    return args


def main(argv=None):
    from cvae.functions import FunctionPair

    args = parse_args(argv)
    data = make_spec(args, 0).data.build(FunctionPair(make_spec(args, 0).functions))
    loads = [common.load()]
    ray_s = common.start_ray(2)
    lines = {PROJECT: [], RANDOM: []}
    walls = {name: [] for name in lines}
    for seed in range(args.seeds):  # the two variants alternate
        spec = make_spec(args, seed)
        grid, wall, wall0 = common.run_project_search(spec, data)
        lines[PROJECT].append(timeline(grid, wall0))
        walls[PROJECT].append(wall)
        grid, wall, wall0 = random_fifo(spec, data, seed)
        lines[RANDOM].append(timeline(grid, wall0))
        walls[RANDOM].append(wall)
        loads.append(common.load())
    common.stop_ray()
    target = args.target if args.target is not None else min(ln["best"].iloc[-1] for ln in lines[RANDOM])
    print(
        common.machine(
            f"{args.seeds} seeds x {args.trials} trials x up to {args.epochs} epochs, mlp, "
            f"{args.rows} rows, 2 concurrent 1-CPU trials, Ray start {ray_s:.1f} s"
        )
    )
    print(f"# loads during the run: {'; '.join(loads)}")
    print(f"# target val_score {target:.4f} (lowest best of the random-FIFO runs)")
    return compare(lines, walls, target)


def compare(lines: dict, walls: dict, target: float) -> float:
    """The table of both searches against the target, and the RESULT line; returns the compute ratio."""
    rows, medians = [], {}
    for name, runs in lines.items():
        hits = [to_target(line, target) for line in runs]
        epochs = [h[0] for h in hits]
        medians[name] = statistics.median(epochs)
        total = statistics.median(ln["epochs"].iloc[-1] for ln in runs)
        best = statistics.median(ln["best"].iloc[-1] for ln in runs)
        seconds = statistics.median(h[1] for h in hits)
        per_seed = ", ".join(f"{e:.0f}" for e in epochs)
        rows.append([name, per_seed, statistics.median(epochs), seconds, total, statistics.median(walls[name]), best])
    tpe_budget = [ln["epochs"].iloc[-1] for ln in lines[PROJECT]]
    at_equal = [best_within(r, b) for r, b in zip(lines[RANDOM], tpe_budget)]
    rows[1].append(statistics.median(at_equal))
    rows[0].append(rows[0][-1])
    common.table(HEADERS, rows)
    ratio = medians[RANDOM] / medians[PROJECT]
    better = rows[0][-1] > rows[1][-1]
    print(
        f"best score at equal compute: TPE+ASHA {rows[0][-1]:.4f} vs random {rows[1][-1]:.4f} "
        f"({'better' if better else 'not better'})"
    )
    common.result("search_efficiency_compute_ratio", ratio, f">={GOAL}", ratio >= GOAL and better)
    return ratio


if __name__ == "__main__":
    main()
