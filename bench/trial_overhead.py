"""In-trial overhead: samples/s of one CVAE trial inside Ray Tune vs the same loop as a plain process.

The Tune side is the project's own trial (search.driver.tuner.make_trainable + make_tuner: one trial,
reporting and checkpointing every epoch, TensorBoard images at epoch 1, each ASHA rung and the last).
The plain side is cvae.Trainer.fit in this process (train + validate each epoch, nothing else).
Rate = rows x (epochs - 1) / time from the end of epoch 1 to the end of the last epoch, so process
and trainer start-up are left out of both (benchmark parallel_scaling measures start-up).
The two alternate over the repeats. Goal: Tune / plain >= 0.95.

    .venv/bin/python bench/trial_overhead.py [--quick] [--rows 4096] [--epochs 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import common
import torch

GOAL = 0.95


def plain_rate(spec, data, epochs: int, cpu: list) -> float:
    from cvae.train import Trainer

    torch.set_num_threads(1)
    trainer = Trainer(spec.trial_config(spec.start_points[0]), *data, device="cpu")
    stamps = []
    trainer.fit(epochs, callback=lambda row: stamps.append(time.perf_counter()))
    cpu.append(statistics.median(r["cpu_seconds"] for r in trainer.history[1:]))
    return data[0][0].shape[0] * (epochs - 1) / (stamps[-1] - stamps[0])


def tune_rate(spec, data, images: bool, cpu: list) -> float:
    from search.driver.tuner import make_trainable

    trainable = make_trainable(spec, data)
    if not images:  # the same trial without its TensorBoard pictures, to show what they cost
        from ray import tune

        from search.driver.trainable import train_trial

        settings = {"base": spec.base_config(), "metric": spec.metric, "max_t": spec.max_t, "image_epochs": []}
        trainable = tune.with_resources(tune.with_parameters(train_trial, data=data, settings=settings), {"cpu": 1})
    grid, _, _ = common.run_project_search(spec, data, trainable=trainable)
    df = common.histories(grid)[0]
    assert len(df) == spec.max_t, df
    total = df["time_total_s"].tolist()
    cpu.append(float(df["cpu_seconds"].iloc[1:].median()))
    return data[0][0].shape[0] * (spec.max_t - 1) / (total[-1] - total[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small run (about a minute)")
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="conv")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.epochs, args.repeats, args.model = 1024, 3, 1, "mlp"
    config = {"lr": 1.0e-3, "beta": 1.0, "wy": 1.0, "optimizer": "Adam"}
    spec = common.spec_from(
        {
            "data": {"train_size": args.rows, "val_conditions": 50},
            "search": {"num_samples": 1, "max_concurrent_trials": 1},
            "asha": {"max_t": args.epochs, "grace_period": 3 if args.epochs > 3 else 1, "reduction_factor": 3},
            "fixed": {"model": args.model, "batch_size": 256, "val_samples": 30},
            "start_points": [config],
        }
    )
    from cvae.functions import FunctionPair

    data = spec.data.build(FunctionPair(spec.functions))
    loads = [common.load()]
    ray_s = common.start_ray(2)
    rates = {
        "plain process (cvae.Trainer.fit)": [],
        "Tune trial (report + checkpoint + images)": [],
        "Tune trial without images": [],
    }
    cpus = {"plain": [], "tune": []}  # CPU seconds of one epoch (train + validate) in the training process
    for _ in range(args.repeats):
        rates["plain process (cvae.Trainer.fit)"].append(plain_rate(spec, data, args.epochs, cpus["plain"]))
        rates["Tune trial (report + checkpoint + images)"].append(tune_rate(spec, data, True, cpus["tune"]))
        if not args.quick:
            rates["Tune trial without images"].append(tune_rate(spec, data, False, cpus["tune"]))
        loads.append(common.load())
    common.stop_ray()
    print(
        common.machine(
            f"{args.model} CVAE, batch 256, {args.rows} rows, {args.epochs} epochs, 1 thread, Ray start {ray_s:.1f} s"
        )
    )
    print(f"# loads during the run: {'; '.join(loads)}")
    common.table(
        ["loop", "min samples/s", "median", "max"],
        [[name, *common.spread(v)] for name, v in rates.items() if v],
    )
    cpu_plain, cpu_tune = statistics.median(cpus["plain"]), statistics.median(cpus["tune"])
    print(
        f"CPU seconds per epoch in the training process: plain {cpu_plain:.3f}, Tune {cpu_tune:.3f} "
        f"(ratio {cpu_plain / cpu_tune:.3f}); wall time beyond this CPU time is waiting for a core"
    )
    plain = statistics.median(rates["plain process (cvae.Trainer.fit)"])
    ratio = statistics.median(rates["Tune trial (report + checkpoint + images)"]) / plain
    common.result("trial_overhead_ratio", ratio, f">={GOAL}", ratio >= GOAL)
    return ratio


if __name__ == "__main__":
    main()
