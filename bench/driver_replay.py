"""The search driver at cluster scale, by simulation: a stream of K concurrent trials reporting every second.

No trial processes and no cluster: the project's own driver-side parts, built as `make_tuner` builds them
(PruningOptunaSearch with TPE and its Optuna journal, Ray's ASHAScheduler, the TrialBoard TensorBoard
callback, the TrialLines console, the SigningCallback, real Tune `Trial` objects with their folders), are fed,
as fast as they take them, the events Tune's controller would hand them for K trials that each report one
result per simulated second: each result (Trial bookkeeping, ASHA's decision, the searcher, TensorBoard), each
ended trial (the searcher told, the writer closed, the console line) and a new trial suggested in its place,
and every --save-every simulated seconds the searcher's state saved and signed, as at an experiment-state save.
The search file is search/configs/cluster.yaml (ASHA max_t 100, grace 5, reduction factor 3); results are
made-up scores of each configuration with the keys and size of a real trial's.

Measured in windows of finished trials (the last tenth before each mark): results per second of wall time,
the driver process's CPU per result (all threads: tensorboardX writes in its own), and where it went. At K
results per simulated second, a driver that handles more than K results/s keeps up; the goal is 1,000
results/s at 1,000 finished trials. Left out: Tune's controller itself (its event loop, experiment-state
JSON, trial checkpoints' bookkeeping) and Ray's RPCs (results, actor starts); see docs/benchmarks.md.

    .venv/bin/python bench/driver_replay.py                        # K = 256 and 1,024, to 5,000 finished trials
    .venv/bin/python bench/driver_replay.py --concurrency 256 --finished 1000
    .venv/bin/python bench/driver_replay.py --quick                # K = 8, 30 finished (a test)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import heapq
import io
import os
import random
import shutil
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import common
from searcher_speed import asha_for, synthetic_score

from search.driver.compat import driver_staging_path

GOAL_RESULTS_S, GOAL_AT = 1000.0, 1000
CLUSTER = common.ROOT / "search" / "configs" / "cluster.yaml"


def cluster_spec():
    import yaml

    raw = yaml.safe_load(CLUSTER.read_text())
    raw["search"].update(time_budget_s=None, num_samples=1_000_000)
    return common.spec_from(raw)


class Parts:
    """The driver-side parts of one search, as make_tuner builds them, in a folder of their own."""

    def __init__(self, spec, folder: str, name: str = "replay", sampler=None):
        from ray.train._internal.storage import StorageContext

        from search.driver.callbacks import SigningCallback, TrialBoard, TrialLines
        from search.driver.storage import Storage
        from search.driver.tuner import make_searcher

        self.spec = spec
        self.searcher = make_searcher(spec, name, Storage(folder), sampler=sampler)
        self.asha = asha_for(spec)
        self.board = TrialBoard(spec.metric, spec.mode, spec.max_t)
        self.console = io.StringIO()
        self.lines = TrialLines(spec.metric, spec.mode, spec.max_t, spec.search.num_samples, out=self.console)
        self.signing = SigningCallback(folder, name)
        self.signing.setup()
        self.storage = StorageContext(storage_path=folder, experiment_dir_name=name)
        self.trials: list = []
        self.made = 0


def new_trial(parts: Parts, clock):
    """A suggestion turned into a running Tune Trial, as Tune's SearchGenerator and controller do it."""
    from ray.tune.experiment import Trial

    from search.trials import trial_name

    trial_id = uuid.uuid4().hex[:8]
    with clock("searcher: suggest"):
        config = parts.searcher.suggest(trial_id)
    with clock("Tune's Trial bookkeeping"):
        parts.made += 1
        tag = f"{parts.made}_" + ",".join(f"{k}={v}" for k, v in list(config.items())[:3])
        trial = Trial(
            "replay",
            config=config,
            trial_id=trial_id,
            storage=copy.copy(parts.storage),
            evaluated_params=dict(config),
            experiment_tag=tag,
            stub=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        )
        trial.set_status(Trial.RUNNING)
        parts.trials.append(trial)
    with clock("ASHA"):
        parts.asha.on_trial_add(None, trial)
    with clock("TensorBoard"):
        parts.board.on_trial_start(iteration=0, trials=parts.trials, trial=trial)
    with clock("signing"):
        parts.signing.on_trial_start(iteration=0, trials=parts.trials, trial=trial)
    return trial


def made_up_result(trial, epoch: int, rng: random.Random, metric: str) -> dict:
    """A trial's epoch result with a real one's keys (search/driver/trainable.py + Tune's own)."""
    value = synthetic_score(trial.config, epoch, rng)
    row = {metric: value, "loss": 1.0 / (1 + epoch), "val_valid_frac": value / 2, "val_coverage_norm": value / 3}
    row.update({k: rng.random() for k in ("val_gates_pass", "kld", "x_loss", "y_loss", "val_overall_rmse")})
    row.update({k: rng.random() for k in ("val_diversity", "val_coverage", "val_gate_rmse", "val_branches_median")})
    row.update(epoch=epoch, seconds=1.0, cpu_seconds=0.97, samples=100000, image_seconds=0.0)
    row.update(checkpoint_seconds=0.0, report_seconds=0.01, node="10.0.0.7", node_id="ab" * 28, diverged=0)
    now = time.time()
    row.update(timestamp=int(now), checkpoint_dir_name=None, done=False, training_iteration=epoch)
    row.update(trial_id=trial.trial_id, date=time.strftime("%Y-%m-%d_%H-%M-%S"), time_this_iter_s=1.0)
    row.update(time_total_s=float(epoch), pid=4242, hostname="node7", node_ip="10.0.0.7", config=trial.config)
    row.update(time_since_restore=float(epoch), iterations_since_restore=epoch)
    return row


def on_result(parts: Parts, trial, result: dict, clock) -> bool:
    """One result in the order Tune's controller handles it; True when the trial ends with it."""
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.utils.util import flatten_dict

    with clock("Tune's Trial bookkeeping"):
        flat = flatten_dict(result)
    with clock("ASHA"):
        stop = parts.asha.on_trial_result(None, trial, flat) == TrialScheduler.STOP
    ends = stop or result["epoch"] >= parts.spec.max_t
    if ends:
        result["done"] = True
    else:
        with clock("searcher: results"):
            parts.searcher.on_trial_result(trial.trial_id, flat)
    with clock("TensorBoard"):
        parts.board.on_trial_result(iteration=0, trials=parts.trials, trial=trial, result=result.copy())
    with clock("Tune's Trial bookkeeping"):
        trial.update_last_result(result)
    if ends:
        end_trial(parts, trial, result, clock)
    return ends


def end_trial(parts: Parts, trial, result: dict, clock) -> None:
    from ray.tune.experiment import Trial

    with clock("searcher: complete"):
        parts.searcher.on_trial_complete(trial.trial_id, result=result)
    with clock("ASHA"):
        parts.asha.on_trial_complete(None, trial, result)
    with clock("Tune's Trial bookkeeping"):
        trial.set_status(Trial.TERMINATED)
        parts.trials.remove(trial)
    with clock("TensorBoard"):
        parts.board.on_trial_complete(iteration=0, trials=parts.trials, trial=trial)
    with clock("console"):
        parts.lines.on_trial_complete(iteration=0, trials=parts.trials, trial=trial)


def save_state(parts: Parts, clock) -> None:
    """What an experiment-state save asks of the project: the searcher's state, then every state file signed."""
    if not parts.trials:
        return
    staging = Path(driver_staging_path(parts.trials[0]))
    staging.mkdir(parents=True, exist_ok=True)
    with clock("state save + signing"):
        parts.searcher.save(str(staging / "searcher-state-replay.pkl"))
        parts.signing.get_state()


class Clock:
    """Main-thread CPU seconds per part (`with clock(name):`)."""

    def __init__(self):
        self.cpu = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, name: str):
        started = time.thread_time()
        try:
            yield
        finally:
            self.cpu[name] += time.thread_time() - started


def make_sampler(name: str):
    """None: the project's TPE (make_searcher's default); "random": Optuna's RandomSampler, a searcher that
    costs next to nothing to think, so what is left is the floor of every other driver-side part."""
    import optuna

    return optuna.samplers.RandomSampler(seed=0) if name == "random" else None


def replay(spec, concurrency: int, finished_goal: int, marks, save_every: float, folder: str, sampler: str = "tpe"):
    """Feed the parts; returns {mark: window measures}."""
    parts = Parts(spec, folder, name=f"replay-k{concurrency}", sampler=make_sampler(sampler))
    clock, rng = Clock(), random.Random(0)
    queue, seq, finished, results = [], 0, 0, 0
    for _ in range(concurrency):
        trial = new_trial(parts, clock)
        queue.append((1.0, seq := seq + 1, trial, 1))
    heapq.heapify(queue)
    windows, start = {}, {m: None for m in marks}
    next_save, second = save_every, 0.0
    while finished < finished_goal:
        at, _, trial, epoch = heapq.heappop(queue)
        if at > second:  # a new simulated second: Tune's step end (the console's progress line)
            second = at
            with clock("console"):
                parts.lines.on_step_end(iteration=0, trials=parts.trials)
            if at >= next_save:
                save_state(parts, clock)
                next_save += save_every
        results += 1
        if on_result(parts, trial, made_up_result(trial, epoch, rng, spec.metric), clock):
            finished += 1
            heapq.heappush(queue, (at + 1.0, seq := seq + 1, new_trial(parts, clock), 1))
            for mark in marks:
                if finished == mark - max(1, mark // 10):
                    start[mark] = snapshot(results, at, clock)
                if finished == mark and start[mark] is not None:
                    windows[mark] = window(start[mark], snapshot(results, at, clock))
        else:
            heapq.heappush(queue, (at + 1.0, seq := seq + 1, trial, epoch + 1))
    parts.board.on_experiment_end(trials=parts.trials)
    staging = Path(driver_staging_path(parts.trials[0])).parent if parts.trials else None
    return windows, staging


def snapshot(results: int, at: float, clock: Clock) -> dict:
    return {
        "results": results,
        "simulated": at,
        "wall": time.perf_counter(),
        "cpu": time.process_time(),
        "main": time.thread_time(),
        "parts": dict(clock.cpu),
    }


def window(a: dict, b: dict) -> dict:
    n = max(1, b["results"] - a["results"])
    wall, cpu = b["wall"] - a["wall"], b["cpu"] - a["cpu"]
    parts = {k: (v - a["parts"].get(k, 0.0)) / n for k, v in b["parts"].items()}
    main = (b["main"] - a["main"]) / n
    parts["the replay's own (made-up results, its queue)"] = main - sum(parts.values())
    parts["other threads (tensorboardX's writers)"] = cpu / n - main
    return {
        "results": n,
        "results_s": n / wall if wall > 0 else float("inf"),
        "cpu_ms": 1000 * cpu / n,
        "simulated_s": b["simulated"] - a["simulated"],
        "wall_s": wall,
        "parts": parts,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="K = 8 to 30 finished trials (a test)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=None, help="K values (default 256 1024)")
    parser.add_argument("--finished", type=int, default=None, help="finished trials to reach (default 5,000)")
    parser.add_argument("--save-every", type=float, default=10.0, help="simulated seconds between state saves")
    parser.add_argument(
        "--sampler", choices=("tpe", "random"), default="tpe", help="random: the floor with a searcher that costs ~0"
    )
    args = parser.parse_args(argv)
    ks = args.concurrency or ([8] if args.quick else [256, 1024])
    goal = args.finished or (30 if args.quick else 5000)
    marks = sorted({m for m in (250, 500, 1000, 2000, 5000) if m < goal} | {goal})
    spec = cluster_spec()
    common.start_ray(1)  # Tune's trial folders live in a Ray session's staging folder; no trial runs in it
    loads, runs = [common.load()], {}
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as folder:
        os.environ["TWOBIRDS_CONFIG_DIR"] = str(Path(folder) / "key")  # a signing key of its own
        for k in ks:
            runs[k], staging = replay(spec, k, goal, marks, args.save_every, folder, args.sampler)
            if staging is not None:  # the trials' TensorBoard folders, in the Ray session's staging folder
                shutil.rmtree(staging, ignore_errors=True)
            loads.append(common.load())
    common.stop_ray()
    what = f"replay of K concurrent trials, 1 result/s each, cluster.yaml's ASHA, {args.sampler} sampler, to {goal}"
    print(common.machine(f"{what} finished"))
    print(f"# loads: {'; '.join(loads)}")
    report(runs, marks)
    at = GOAL_AT if GOAL_AT in marks else marks[-1]
    worst = min(runs[k][at]["results_s"] for k in ks if at in runs[k])
    common.result(f"driver_results_per_s_at_{at}", worst, f">={GOAL_RESULTS_S:.0f}", worst >= GOAL_RESULTS_S)
    return worst


def report(runs: dict, marks) -> None:
    rows, parts = [], []
    for k, windows in runs.items():
        for mark in marks:
            if mark not in windows:
                continue
            w = windows[mark]
            keeps = "yes" if w["results_s"] >= k else "no"
            rows.append([f"{k:,}", f"{mark:,}", f"{w['results_s']:,.0f}", f"{w['cpu_ms']:.2f}", keeps])
            shares = sorted(w["parts"].items(), key=lambda kv: -kv[1])
            parts.append([f"{k:,}", f"{mark:,}", "; ".join(f"{name} {1000 * v:.2f}" for name, v in shares)])
    print("\nsustained, over the last tenth of the finished trials before each mark")
    common.table(["K", "finished", "results/s", "driver CPU ms per result", "keeps up with K results/s"], rows)
    print("\ndriver CPU per result (ms), by part")
    common.table(["K", "finished", "parts"], parts)


if __name__ == "__main__":
    main()
