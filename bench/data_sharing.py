"""Data sharing: per-trial start-up with the dataset in Ray's object store (the project's
tune.with_parameters) vs each trial generating it (cvae.data.make_dataset) or loading it from a
.pt file (cvae.data.load_challenge), with each trial's peak RSS.

Each trial runs in a fresh worker process (no actor reuse, so peak RSS is the trial's own), gets
the data, builds a cvae.Trainer and trains one epoch on it; it reports the seconds until its data
was ready and the process's peak RSS. 100,000 rows (the official training set's size) by default.

Goal: seconds to data, object store (the project's numpy) / the faster of generating and loading <= 1.

    .venv/bin/python bench/data_sharing.py [--quick] [--rows 100000] [--trials 4]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import common

GOAL = 1.0  # seconds to data: object store / the faster of generating and loading
HEADERS = [
    "data source",
    "min s to data",
    "median",
    "max",
    "median s to trained-ready (data + Trainer)",
    "median peak RSS MB",
]
TRAIN_ROWS = 2048  # rows actually trained on (the point is start-up, not training)


def trial(config: dict, box=None) -> None:
    """One trial: get the data the way config['source'] says, build a trainer, train one short epoch.

    "object store, ...": box holds ObjectRefs of the driver's ray.put data (tensors, or the numpy
    arrays of search.driver.trainable.shareable that the project puts), fetched here with ray.get, which
    is what tune.with_parameters' wrapper does before calling the project's train_trial.
    """
    import warnings

    import ray
    import torch
    from ray import tune

    from cvae.config import Config
    from cvae.data import DataSpec, load_challenge
    from cvae.functions import FunctionPair
    from cvae.train import Trainer

    started = time.perf_counter()
    if config["source"] == "object store, tensors":
        train, val = ray.get(box[0])
    elif config["source"] == "object store, numpy (project)":
        arrays = ray.get(box[1])  # read-only views of the shared-memory object; torch warns they are not writable
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            train, val = ((torch.from_numpy(a), torch.from_numpy(b)) for a, b in arrays)
    elif config["source"] == "generate":
        train, val = DataSpec(train_size=config["rows"], val_conditions=20).build(FunctionPair())
    else:
        train = load_challenge(config["file"])
        val = DataSpec(train_size=1, val_conditions=20).build(FunctionPair())[1]
    ready = time.perf_counter() - started
    trainer = Trainer(Config(model="mlp", epochs=1), train, val, "cpu")
    trainer.x, trainer.y = trainer.x[:TRAIN_ROWS], trainer.y[:TRAIN_ROWS]  # start-up is the point, not training
    trainer.fit(1)
    tune.report(
        {
            "ready_s": ready,
            "startup_s": time.perf_counter() - started - trainer.history[-1]["seconds"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "data_mb": (train[0].nbytes + train[1].nbytes) / 2**20,
        }
    )


def run(source: str, args, box, file: str) -> list[dict]:
    import sys

    from ray import cloudpickle, tune

    if __name__ != "__main__":  # imported (e.g. by the tests) from bench/, which workers cannot import
        cloudpickle.register_pickle_by_value(sys.modules[__name__])

    trainable = tune.with_resources(tune.with_parameters(trial, box=box), {"cpu": 1})
    tuner = tune.Tuner(
        trainable,
        param_space={"source": source, "rows": args.rows, "file": file},
        tune_config=tune.TuneConfig(num_samples=args.trials, max_concurrent_trials=1, reuse_actors=False),
        run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(prefix="bench-"), verbose=0),
    )
    return [r.metrics for r in tuner.fit()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--trials", type=int, default=4)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.trials = 5000, 1
    import ray
    import torch
    from torch.utils.data import TensorDataset

    from cvae.data import DataSpec
    from cvae.functions import FunctionPair
    from search.driver.trainable import shareable

    data = DataSpec(train_size=args.rows, val_conditions=20).build(FunctionPair())
    folder = Path(tempfile.mkdtemp(prefix="bench-data-"))
    file = str(folder / "train.pt")
    torch.save(TensorDataset(data[0][0].unsqueeze(1), data[0][1].unsqueeze(1)), file)  # the challenge's format
    loads = [common.load()]
    ray_s = common.start_ray(2)
    box = [ray.put(data), ray.put(shareable(data))]  # [1]: what the project's make_trainable puts
    results = {}
    for source in ("object store, tensors", "object store, numpy (project)", "generate", "load .pt file"):
        results[source] = run(source, args, box, file)
        loads.append(common.load())
    common.stop_ray()
    print(
        common.machine(
            f"{args.rows:,} training rows ({results['generate'][0]['data_mb']:.0f} MB), "
            f"{args.trials} trials per variant, fresh process each, Ray start {ray_s:.1f} s"
        )
    )
    print(f"# loads during the run: {'; '.join(loads)}")
    rows = []
    for source, values in results.items():
        rows.append(
            [
                source,
                *common.spread(v["ready_s"] for v in values),
                statistics.median(v["startup_s"] for v in values),
                statistics.median(v["peak_rss_mb"] for v in values),
            ]
        )
    common.table(HEADERS, rows)
    store = statistics.median(v["ready_s"] for v in results["object store, numpy (project)"])
    best_other = min(statistics.median(v["ready_s"] for v in results[s]) for s in ("generate", "load .pt file"))
    ratio = store / best_other
    common.result("data_sharing_startup_ratio", ratio, f"<={GOAL}", ratio <= GOAL)
    return ratio


if __name__ == "__main__":
    main()
