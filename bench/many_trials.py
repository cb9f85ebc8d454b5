"""Many short trials through the project's own Tuner: trials/s against the ideal, and where the rest goes.

The search is `search.driver.tuner.make_tuner` as `run_search` builds it (PruningOptunaSearch/TPE with its
Optuna journal, ASHA, TrialBoard/TrialLines/signing callbacks, checkpoints, TensorBoard images)
on the default laptop space (search/configs/laptop.yaml) with tiny data (64 rows, 2 validation
conditions) and a short budget (asha max_t 4, grace 1, reduction factor 2), 1 CPU per trial, as
many concurrent trials as the machine has cores. Each epoch's training is padded with a sleep to
--epoch-seconds (0.25 s: a trial ASHA lets finish is a one-second trial), so the work is known:
ideal wall = sum of epoch seconds / concurrency, efficiency = ideal / wall.

The overhead is broken down from timers on the driver (searcher suggest/result/complete,
TensorBoard writes, experiment-state saves) and from what each trial reports of itself
(image_seconds, checkpoint_seconds, report_seconds); the rest is Tune's own bookkeeping and
scheduling. The searcher's cost is shown as the finished trials grow. The same search then runs
with Optuna's RandomSampler instead of TPE (same everything else) to isolate TPE's share.

    .venv/bin/python bench/many_trials.py            # 1,000 trials (+ 1,000 random), ~20 min on 2 cores
    .venv/bin/python bench/many_trials.py --quick    # 100 tiny trials, no padding (a test)
    .venv/bin/python bench/many_trials.py --long     # 5,000 trials
    .venv/bin/python bench/many_trials.py --trials 1000 --fifo --no-random   # Ray's published run, like for like

--fifo: no early stopping (Tune's FIFOScheduler in place of ASHA), so every trial is a one-second trial, as in
Ray Tune's own bookkeeping benchmark (10,000 one-second trials on 16 CPUs: 715 s against 625 s ideal, 87%).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import tempfile
import time
from collections import defaultdict

import common

common.pickle_by_value(__name__)  # the trial function below reaches the workers even when imported (tests)

GOALS = {"efficiency": 0.85, "searcher_ms": 50.0, "overhead_s": 0.3}
FIFO_GOALS = {"no images": 0.87, "images": 0.80}  # --fifo (issue 22): Ray's own 87%; 0.80 with sample images
SEARCHER_PARTS = ("suggest", "result", "complete")  # the searcher calls timed per trial
LAPTOP = common.ROOT / "search" / "configs" / "laptop.yaml"


def padded_trial(config, data=None, settings=None):
    """The project's train_trial, each epoch's training padded with a sleep to settings['epoch_seconds']."""
    import search.driver.trainable as trainable
    from cvae.train import Trainer

    pad = settings["epoch_seconds"]

    class PaddedTrainer(Trainer):
        def train_epoch(self):
            started = time.perf_counter()
            row = super().train_epoch()
            time.sleep(max(0.0, pad - (time.perf_counter() - started)))
            return row

    trainable.Trainer = PaddedTrainer  # this worker process only
    trainable.train_trial(config, data=data, settings=settings)


class Timers:
    """Wall seconds spent in driver-side methods, recorded per call with the number of trials finished then."""

    def __init__(self):
        self.calls = defaultdict(list)  # name -> [(finished, seconds)]
        self.finished = 0
        self._undo = []

    def wrap(self, cls, method: str, name: str, counts_finish: bool = False):
        original = getattr(cls, method)

        @functools.wraps(original)
        def timed(obj, *args, **kwargs):
            started = time.perf_counter()
            try:
                return original(obj, *args, **kwargs)
            finally:
                self.calls[name].append((self.finished, time.perf_counter() - started))
                if counts_finish:
                    self.finished += 1

        setattr(cls, method, timed)
        self._undo.append((cls, method, original))

    def undo(self):
        for cls, method, original in reversed(self._undo):
            setattr(cls, method, original)
        self._undo.clear()

    def total(self, *names) -> float:
        return sum(s for n in names for _, s in self.calls[n])

    def per_trial_at(self, finished: int, window: int, names) -> float:
        """Mean seconds per trial of these calls made while finished was in [finished - window, finished)."""
        low = max(0, finished - window)
        seconds = sum(s for n in names for f, s in self.calls[n] if low <= f < finished)
        trials = sum(1 for f, _ in self.calls["suggest"] if low <= f < finished)
        return seconds / trials if trials else float("nan")


def instrument() -> Timers:
    from ray.tune.execution.tune_controller import TuneController

    from search.driver.callbacks import SigningCallback, TrialBoard
    from search.driver.searcher import PruningOptunaSearch

    timers = Timers()
    timers.wrap(PruningOptunaSearch, "suggest", "suggest")
    timers.wrap(PruningOptunaSearch, "on_trial_result", "result")
    timers.wrap(PruningOptunaSearch, "on_trial_complete", "complete", counts_finish=True)
    timers.wrap(TrialBoard, "log_trial_result", "tensorboard")
    timers.wrap(TrialBoard, "log_trial_end", "tensorboard")
    timers.wrap(TuneController, "save_to_dir", "state_save")  # experiment state + searcher state + callbacks
    timers.wrap(SigningCallback, "get_state", "signing")  # part of state_save
    return timers


def before_changes() -> None:
    """Undo, in this driver, the two changes the search file cannot: fsync per journal write and per TB result."""
    import search.driver.tuner as tuner
    from search.driver import compat, study
    from search.driver.callbacks import TrialBoard

    tuner.open_storage = lambda folder, create=False, fsync=True: study.open_storage(folder, create, fsync=True)
    if not getattr(TrialBoard, "_flushing", False):
        log = TrialBoard.log_trial_result

        def flushing(self, iteration, trial, result):
            log(self, iteration, trial, result)
            compat.trial_writers(self)[trial].flush()

        TrialBoard.log_trial_result, TrialBoard._flushing = flushing, True


def make_spec(args, sampler_seed: int = 0):
    import yaml

    raw = yaml.safe_load(LAPTOP.read_text())
    raw["data"].update(train_size=64, val_conditions=2)
    raw["search"].update(
        num_samples=args.trials,
        max_concurrent_trials=args.concurrency,
        time_budget_s=None,
        seed=sampler_seed,
        **({"checkpoint_every": args.checkpoint_every} if args.checkpoint_every else {}),
        **({"images": args.images} if args.images else {}),
        **({"checkpoint_every": 1, "images": "first_and_rungs"} if args.before else {}),
    )
    raw["asha"] = {"max_t": 4, "grace_period": 1, "reduction_factor": 2}
    raw["fixed"].update(val_samples=2, val_refine_steps=0)
    return common.spec_from(raw)


def run(args, spec, data, sampler: str):
    from ray import tune

    from search.driver.storage import Storage
    from search.driver.trainable import shareable
    from search.driver.tuner import make_tuner, trial_images, trial_settings

    # make_trainable's settings and resources, with padded_trial in place of train_trial
    settings = {**trial_settings(spec), "epoch_seconds": args.epoch_seconds}
    trainable = tune.with_parameters(padded_trial, data=shareable(data), settings=settings)
    trainable = tune.with_resources(trainable, {"cpu": spec.search.cpus_per_trial, "gpu": 0})
    storage = Storage(tempfile.mkdtemp(prefix="bench-many-"))
    kwargs = {}
    if sampler == "random":
        from optuna.samplers import RandomSampler

        kwargs["sampler"] = RandomSampler(seed=spec.search.seed)
    if args.before:
        before_changes()
    if args.fifo:
        from ray.tune.schedulers import FIFOScheduler

        kwargs["scheduler"] = FIFOScheduler()
    tuner = make_tuner(spec, trainable, "many", storage, **kwargs)
    with contextlib.redirect_stdout(io.StringIO()):  # TrialLines' one line per trial
        timers = instrument()
        started, cpu = time.perf_counter(), time.process_time()
        try:
            grid = tuner.fit()
        finally:
            timers.undo()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    common.failed(grid)
    frames = common.histories(grid)
    epochs = sum(len(f) for f in frames)
    work = sum(float(f["seconds"].sum()) for f in frames)
    in_trial = {
        key: sum(float(f[key].sum()) for f in frames if key in f)
        for key in ("image_seconds", "checkpoint_seconds", "report_seconds")
    }
    drawn = set(trial_images(spec))
    images = sum(int(f["epoch"].isin(drawn).sum()) for f in frames)  # epochs that drew their sample plots
    return {
        "wall": wall,
        "driver_cpu": cpu,
        "trials": len(frames),
        "epochs": epochs,
        "work": work,
        "timers": timers,
        "in_trial": in_trial,
        "images": images,
        "concurrency": spec.search.max_concurrent_trials,
        "errors": sum(1 for r in grid if r.error is not None),
    }


def breakdown_rows(name: str, r) -> list:
    """Overhead in trial-slot seconds (wall x concurrency - work), what the trials spent of it, and driver time."""
    n, c, t = r["trials"], r["concurrency"], r["timers"]
    ideal = r["work"] / c
    overhead = r["wall"] * c - r["work"]
    rows = [[name, "wall / ideal (s)", f"{r['wall']:.1f} / {ideal:.1f}", f"{ideal / r['wall']:.3f} efficiency"]]
    rows.append([name, "overhead per trial (s)", f"{overhead / n:.3f}", f"{n} trials, {r['epochs']} epochs"])
    worker = {
        "in trials: TensorBoard images": r["in_trial"]["image_seconds"],
        "in trials: checkpoint saves": r["in_trial"]["checkpoint_seconds"],
        "in trials: tune.report + checkpoint upload": r["in_trial"]["report_seconds"],
    }
    for label, seconds in worker.items():
        rows.append([name, label, f"{seconds:.1f} s", f"{1000 * seconds / n:.1f} ms/trial"])
    if r["images"]:
        rows[-3][3] += f", {r['images']} epochs with images: {1000 * worker[rows[-3][1]] / r['images']:.1f} ms each"
    rest = overhead - sum(worker.values())
    label = "in trials: the rest (start, Trainer, waiting for Tune)"
    rows.append([name, label, f"{rest:.1f} s", f"{1000 * rest / n:.1f} ms/trial"])
    driver = {
        "driver: searcher (suggest + results + complete)": t.total("suggest", "result", "complete"),
        "driver: TensorBoard writes": t.total("tensorboard"),
        "driver: experiment-state saves": t.total("state_save"),
    }
    for label, seconds in driver.items():
        rows.append([name, label, f"{seconds:.1f} s", f"{1000 * seconds / n:.1f} ms/trial"])
    rows[-1][3] += f", {len(t.calls['state_save'])} saves, signing {t.total('signing'):.1f} s"
    cpu = r["driver_cpu"]
    rows.append([name, "driver process CPU (all of it)", f"{cpu:.1f} s", f"{1000 * cpu / n:.1f} ms/trial"])
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 tiny trials without padding")
    parser.add_argument("--long", action="store_true", help="5,000 trials")
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--epoch-seconds", type=float, default=0.25)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--checkpoint-every", type=int, default=None, help="override search.checkpoint_every")
    parser.add_argument(
        "--images", choices=("survivors", "rungs", "first_and_rungs", "none"), help="override search.images"
    )
    parser.add_argument("--no-random", action="store_true", help="skip the RandomSampler run")
    parser.add_argument("--fifo", action="store_true", help="no early stopping: every trial runs max_t epochs")
    parser.add_argument(
        "--before",
        action="store_true",
        help="the settings before this benchmark's changes: checkpoint every epoch, an image at epoch 1 too, "
        "an fsync per journal write and per TensorBoard result",
    )
    args = parser.parse_args(argv)
    if args.trials is None:
        args.trials = 100 if args.quick else 5000 if args.long else 1000
    if args.quick:
        args.epoch_seconds = 0.0
    return args


def main(argv=None):
    from cvae.functions import FunctionPair

    args = parse_args(argv)
    spec = make_spec(args)
    data = spec.data.build(FunctionPair(spec.functions))
    loads = [common.load()]
    ray_s = common.start_ray(args.concurrency)
    runs = {"TPE (project)": run(args, spec, data, "tpe")}
    loads.append(common.load())
    if not args.no_random:
        runs["random sampler"] = run(args, spec, data, "random")
        loads.append(common.load())
    common.stop_ray()
    print(
        common.machine(
            f"{args.trials} trials, laptop space, max_t 4, {'FIFO' if args.fifo else 'ASHA grace 1, rf 2'}, "
            f"epochs padded to {args.epoch_seconds} s, "
            f"{args.concurrency} concurrent 1-CPU trials, checkpoint_every {spec.search.checkpoint_every}, "
            f"images {spec.search.images}{', BEFORE the changes (--before)' if args.before else ''}, "
            f"Ray start {ray_s:.1f} s"
        )
    )
    print(f"# loads during the run: {'; '.join(loads)}")
    rows = []
    for name, r in runs.items():
        rows += breakdown_rows(name, r)
    common.table(["search", "what", "value", "note"], rows)
    marks = [m for m in (100, 500, 1000, 2000) if m < args.trials] + [args.trials]
    searcher_table(runs, marks)
    return report_results(args, spec, runs, marks[-1])


def searcher_table(runs: dict, marks: list[int]) -> None:
    srows = []
    for name, r in runs.items():
        t = r["timers"]
        for m in marks:
            window = max(10, min(50, m // 5))
            srows.append(
                [name, str(m)]
                + [f"{1000 * t.per_trial_at(m, window, (each,)):.1f}" for each in SEARCHER_PARTS]
                + [f"{1000 * t.per_trial_at(m, window, SEARCHER_PARTS):.1f}"]
            )
    print("\nsearcher cost per trial (ms) as finished trials grow (mean over the trials before each mark)")
    common.table(["search", "finished", "suggest", "results", "complete", "suggest + tell"], srows)


def report_results(args, spec, runs: dict, at: int) -> float:
    """The RESULT lines (TPE's run); returns its efficiency."""
    tpe = runs["TPE (project)"]
    efficiency = tpe["work"] / tpe["concurrency"] / tpe["wall"]
    overhead = (tpe["wall"] * tpe["concurrency"] - tpe["work"]) / tpe["trials"]
    searcher = 1000 * tpe["timers"].per_trial_at(at, max(10, min(50, at // 5)), SEARCHER_PARTS)
    if "random sampler" in runs:
        rnd = runs["random sampler"]["timers"].per_trial_at(at, max(10, min(50, at // 5)), SEARCHER_PARTS)
        print(f"TPE's share of the searcher at {at} finished: {searcher - 1000 * rnd:.1f} of {searcher:.1f} ms")
    errors = sum(r["errors"] for r in runs.values())
    if errors:
        print(f"warning: {errors} trials errored")
    common.result("many_trials_overhead_s", overhead, f"<={GOALS['overhead_s']}", overhead <= GOALS["overhead_s"])
    common.result(f"many_trials_searcher_ms_at_{at}", searcher, f"<={GOALS['searcher_ms']:.0f}", searcher <= 50)
    if tpe["images"]:  # issue 22: a trial's sample plots (every tag of an epoch) in <= 50 ms
        image_ms = 1000 * tpe["in_trial"]["image_seconds"] / tpe["images"]
        common.result("many_trials_image_ms", image_ms, "<=50", image_ms <= 50)
    if args.fifo:
        goal = FIFO_GOALS["no images" if spec.search.images == "none" else "images"]
        common.result("many_trials_fifo_efficiency", efficiency, f">={goal}", efficiency >= goal)
    else:
        common.result("many_trials_efficiency", efficiency, f">={GOALS['efficiency']}", efficiency >= 0.85)
    return efficiency


if __name__ == "__main__":
    main()
