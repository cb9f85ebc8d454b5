"""GPU: samples/s of one trial at large batch, and aggregate samples/s of 1, 4, 8 and 16 concurrent
trials sharing one GPU through fractional GPUs (Ray Tune, {"gpu": 1/n}), with GPU memory per trial.

Each trial trains the conv CVAE (cvae.Trainer, data on the GPU) for a few epochs and reports its
rate over epochs 2.. and torch.cuda.max_memory_allocated. Aggregate = sum of the concurrent trials'
rates. The model is tiny, so the goal is aggregate throughput growing with trials until the GPU is
saturated; the table says where growth stops (< 10% more for the next step).
On a machine without CUDA it prints "skipped: no GPU" (--force-cpu runs the same code on CPU with a
pretend GPU, to check the script itself).

    .venv/bin/python bench/gpu_scaling.py [--quick] [--rows 100000] [--batch-size 4096] [--trials 1,4,8,16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import common

GOAL = "aggregate(16)/aggregate(1)>1"
HEADERS = ["concurrent trials", "aggregate samples/s", "per trial (median)", "GPU MB per trial"]


def trial(config: dict, data=None) -> None:
    import torch
    from ray import tune

    from cvae.config import Config
    from cvae.train import Trainer

    torch.set_num_threads(1)
    device = "cuda" if torch.cuda.is_available() and not config["force_cpu"] else "cpu"
    trainer = Trainer(Config(model="conv", batch_size=config["batch_size"], val_samples=30), data[0], data[1], device)
    stamps = []

    def callback(row):
        if device == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    trainer.fit(config["epochs"], callback=callback)
    rate = trainer.x.shape[0] * (len(stamps) - 1) / (stamps[-1] - stamps[0])
    memory = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")
    tune.report({"rate": rate, "gpu_mb": memory, "device": device})


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--trials", default="1,4,8,16")
    parser.add_argument("--force-cpu", action="store_true", help="run on CPU with a pretend GPU (tests the script)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.epochs = 20_000, 3
    if args.force_cpu:
        args.rows, args.epochs, args.batch_size, args.trials = 2048, 2, 512, "1,2"
    return args


def main(argv=None):
    import torch

    args = parse_args(argv)
    if not torch.cuda.is_available() and not args.force_cpu:
        print(common.machine("no CUDA device"))
        print("skipped: no GPU")
        common.table(HEADERS, [["skipped: no GPU", "n/a", "n/a", "n/a"]])
        common.result("gpu_aggregate_scaling", "skipped", GOAL, False)
        return None
    import sys

    from ray import cloudpickle

    from cvae.data import DataSpec
    from cvae.functions import FunctionPair

    if __name__ != "__main__":  # imported from bench/, which Ray workers cannot import
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    counts = [int(n) for n in args.trials.split(",")]
    data = DataSpec(train_size=args.rows, val_conditions=50).build(FunctionPair())
    cpus = os.cpu_count() or 1
    ray_s = common.start_ray(cpus, num_gpus=1)
    name = "cpu (forced)" if args.force_cpu else torch.cuda.get_device_name(0)
    rows = [measure(n, cpus, data, args) for n in counts]
    common.stop_ray()
    print(
        common.machine(
            f"{name}, conv CVAE, batch {args.batch_size}, {args.rows:,} rows, {args.epochs} epochs, "
            f"Ray start {ray_s:.1f} s"
        )
    )
    common.table(HEADERS, rows)
    aggregates = [row[1] for row in rows]
    saturated = next((counts[i] for i in range(len(counts) - 1) if aggregates[i + 1] < 1.1 * aggregates[i]), None)
    print(
        f"saturation: {'aggregate stops growing after ' + str(saturated) + ' trials' if saturated else 'not reached'}"
    )
    ratio = aggregates[-1] / aggregates[0]
    common.result("gpu_aggregate_scaling", ratio, GOAL, ratio > 1)
    return ratio


def measure(n: int, cpus: int, data, args) -> list:
    """n trials sharing the GPU at once: [n, aggregate samples/s, median per trial, median GPU MB per trial]."""
    from ray import tune

    resources = {"cpu": max(cpus // n, 1) if n <= cpus else cpus / n, "gpu": 1 / n}
    trainable = tune.with_resources(tune.with_parameters(trial, data=data), resources)
    tuner = tune.Tuner(
        trainable,
        param_space={"batch_size": args.batch_size, "epochs": args.epochs, "force_cpu": args.force_cpu},
        tune_config=tune.TuneConfig(num_samples=n, max_concurrent_trials=n),
        run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(prefix="bench-"), verbose=0),
    )
    metrics = [r.metrics for r in tuner.fit()]
    rates = [m["rate"] for m in metrics]
    return [str(n), sum(rates), statistics.median(rates), statistics.median(m["gpu_mb"] for m in metrics)]


if __name__ == "__main__":
    main()
