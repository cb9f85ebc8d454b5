"""Against the original workflow: plain sequential Optuna TPE in one process, full-length trials,
vs this project (Ray Tune, 2 concurrent 1-CPU trials, TPE + ASHA) on the same machine.

Same space (search_efficiency's), same trial count and max epochs, same data and seed.
(a) optuna.create_study + TPESampler, each trial cvae.Trainer.fit for max_t epochs, objective the
    final val_score, torch on all cores (what a notebook does). (b) the project's search, timed from
    before Ray starts. Goal: (b) reaches (a)'s best score in <= 1/2 of (a)'s wall time.

    .venv/bin/python bench/original_workflow.py [--quick] [--trials 16] [--epochs 9]
"""

from __future__ import annotations

import argparse
import math
import os
import time

import common
import torch
from search_efficiency import make_spec, timeline, to_target

GOAL = 0.5


def sequential_optuna(spec, data, seed: int) -> tuple[float, float]:
    """(best final val_score, wall seconds) of the original loop."""
    import optuna

    from cvae.train import Trainer

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(os.cpu_count() or 1)
    space = spec.optuna_space()

    def objective(trial):
        space(trial)
        trainer = Trainer(spec.trial_config(trial.params), *data, device="cpu")
        trainer.fit(spec.max_t)
        value = trainer.history[-1].get("val_score", -1.0)
        return value if math.isfinite(value) else -1.0

    started = time.perf_counter()
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.search.tpe_startup_trials),
    )
    study.optimize(objective, n_trials=spec.search.num_samples)
    return study.best_value, time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.epochs, args.rows = 2, 1, 256
    from cvae.functions import FunctionPair

    spec = make_spec(args, args.seed)
    data = spec.data.build(FunctionPair(spec.functions))
    loads = [common.load()]
    best_a, wall_a = sequential_optuna(spec, data, args.seed)
    loads.append(common.load())
    started = time.perf_counter()
    ray_s = common.start_ray(2)
    grid, _wall_b, wall0 = common.run_project_search(spec, data)
    line = timeline(grid, wall0)
    common.stop_ray()
    loads.append(common.load())
    total_b = time.perf_counter() - started
    _, to_a = to_target(line, best_a)
    to_a = to_a + ray_s if math.isfinite(to_a) else math.inf
    print(common.machine(f"{args.trials} trials x {args.epochs} epochs, mlp, {args.rows} rows, seed {args.seed}"))
    print(f"# loads during the run: {'; '.join(loads)}")
    common.table(
        ["workflow", "best val_score", "wall s", "s to (a)'s best", "trial-epochs"],
        [
            [
                "(a) sequential Optuna TPE, one process, full-length trials",
                best_a,
                wall_a,
                wall_a,
                args.trials * args.epochs,
            ],
            [
                f"(b) this project: Ray Tune, 2 x 1-CPU trials, TPE + ASHA (incl. Ray start {ray_s:.1f} s)",
                float(line["best"].iloc[-1]),
                total_b,
                to_a if math.isfinite(to_a) else "not reached",
                int(line["epochs"].iloc[-1]),
            ],
        ],
    )
    ratio = to_a / wall_a
    common.result("original_workflow_time_ratio", ratio, f"<={GOAL}", ratio <= GOAL)
    return ratio


if __name__ == "__main__":
    main()
