"""The searcher's own cost as finished trials grow, without trial processes: suggest + tell on the wide space.

The searcher is `search.driver.tuner.make_searcher` as `run_search` builds it (PruningOptunaSearch, TPE on the
wide space, search/configs/wide.yaml: 25 parameters, two latent families; its study in an Optuna journal), and Ray's own
ASHAScheduler (that file's max_t 30, grace 3, reduction factor 3) decides which trials stop. They are fed
synthetic results in the order Tune would call them: --concurrency trials running at once, each suggested,
then reporting one epoch at a time (a made-up score of its configuration that grows with the epochs) until ASHA
stops it or it reaches max_t, then completed. No Ray is started and no trial runs.

Per trial: the searcher's suggest, its results and its completion (suggest + tell), in wall and CPU seconds,
and the made-up quality of the configurations it suggested (what the search is for: a faster searcher must not
suggest worse ones), averaged over the trials suggested just before each mark of finished trials; at each mark,
one save of the searcher's state (what Tune does at every experiment-state save) and its size. `--sampler
stock` runs Optuna's own TPESampler with the same settings and Ray's own state save (pickling every Optuna
trial): the project's searcher before issue 22. `--sampler exact` runs the project's TPE with a fit of its
own for every suggestion, as TPESampler (its default draws from a kept fit past 67 trials).

    .venv/bin/python bench/searcher_speed.py                      # 1,000 trials, the project's searcher
    .venv/bin/python bench/searcher_speed.py --sampler stock      # the same with Optuna's TPE and Ray's save
    .venv/bin/python bench/searcher_speed.py --sampler exact      # the project's TPE, a fit per suggestion
    .venv/bin/python bench/searcher_speed.py --quick              # 40 trials (a test)
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
import warnings
from pathlib import Path

import common

GOAL_MS = 50.0
HEADERS = [
    "finished",
    "suggest",
    "tell (results + complete)",
    "suggest + tell",
    "of it CPU",
    "epochs",
    "quality",
    "state save",
]
WIDE = common.ROOT / "search" / "configs" / "wide.yaml"


def wide_spec(trials: int, concurrency: int):
    import yaml

    raw = yaml.safe_load(WIDE.read_text())
    # running trials are replaced until the last mark: its window has suggestions at any concurrency
    raw["search"].update(num_samples=trials + concurrency, max_concurrent_trials=concurrency, time_budget_s=None)
    return common.spec_from(raw)


def synthetic_quality(config: dict) -> float:
    """How good a configuration is on the made-up objective, in [0, 1.6]: a clear optimum (lr 1e-3, beta 0.1, Adam)."""
    quality = math.exp(-((math.log10(config["lr"]) + 3.0) ** 2)) + 0.3 * math.exp(-abs(math.log10(config["beta"]) + 1))
    quality += {"Adam": 0.2, "RMSprop": 0.1, "SGD": 0.0}[config["optimizer"]]
    return quality + (0.1 if config["latent"] == "categorical" else 0.05 * (config.get("head") == "lines"))


def synthetic_score(config: dict, epoch: int, rng: random.Random) -> float:
    """A made-up val_score: the configuration's quality, rising with epochs, with noise."""
    return max(0.0, synthetic_quality(config) * (1 - 0.7 / (1 + epoch)) + rng.gauss(0, 0.03))


class Clock:
    """Wall and CPU seconds of the calls made inside `with clock:` blocks, added up."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def __enter__(self):
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *_):
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu


def make(spec, folder: str, sampler: str):
    """The project's searcher (or the stock one) and Ray's ASHAScheduler, as make_tuner builds them."""
    import optuna

    from search.driver.storage import Storage
    from search.driver.tpe import IncrementalTPESampler
    from search.driver.tuner import make_searcher

    chosen = None
    settings = {
        "seed": spec.search.seed,
        "n_startup_trials": spec.search.tpe_startup_trials,
        "group": spec.optuna_space().conditional,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if sampler == "stock":
            chosen = optuna.samplers.TPESampler(**settings)
        elif sampler == "exact":
            chosen = IncrementalTPESampler(**settings, refit_share=0.0)
    return make_searcher(spec, "speed", Storage(folder), sampler=chosen), asha_for(spec)


def asha_for(spec):
    """Ray's ASHAScheduler as make_tuner builds it (metric and mode given here, not by a TuneConfig)."""
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="epoch",
        metric=spec.metric,
        mode=spec.mode,
        max_t=spec.max_t,
        grace_period=spec.asha.grace_period,
        reduction_factor=spec.asha.reduction_factor,
    )


class Trial:
    """What ASHA reads of a Tune trial."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def save_state(searcher, folder: Path, stock: bool) -> tuple[float, int]:
    """Seconds and bytes of one save of the searcher's state (Ray's own OptunaSearch.save when stock)."""
    from ray.tune.search.optuna import OptunaSearch

    path = folder / "searcher-state.pkl"
    started = time.perf_counter()
    (OptunaSearch.save if stock else type(searcher).save)(searcher, str(path))
    return time.perf_counter() - started, path.stat().st_size


def feed(searcher, asha, spec, trials: int, concurrency: int, marks, folder: Path, stock: bool):
    """Suggest, report and complete trials, `concurrency` at a time (each that ends replaced at once), as Tune
    calls a searcher, until `trials` have finished.

    Returns per-trial records (finished when suggested, suggest/tell wall and CPU seconds, epochs) and the
    state saves at the marks {mark: (seconds, bytes)}.
    """
    from ray.tune.schedulers import TrialScheduler

    rng, live, records, saves, finished, made = random.Random(0), [], [], {}, 0, 0
    while finished < trials:
        while len(live) < concurrency:
            trial_id, suggest = f"t{made:05d}", Clock()
            with suggest:
                config = searcher.suggest(trial_id)
            asha.on_trial_add(None, Trial(trial_id))
            live.append({"id": trial_id, "config": config, "epoch": 0, "n": made, "suggest": suggest, "tell": Clock()})
            quality = synthetic_quality(config)
            records.append(
                {"finished": finished, "epochs": 0, "suggest": suggest, "tell": live[-1]["tell"], "quality": quality}
            )
            made += 1
        trial = live.pop(0)
        trial["epoch"] += 1
        epoch = trial["epoch"]
        result = {
            spec.metric: synthetic_score(trial["config"], epoch, rng),
            "epoch": epoch,
            "training_iteration": epoch,
            "experiment_tag": f"{trial['n'] + 1}_x",
        }
        records[trial["n"]]["epochs"] = epoch
        stop = asha.on_trial_result(None, Trial(trial["id"]), result) == TrialScheduler.STOP
        with trial["tell"]:
            if stop or epoch >= spec.max_t:
                searcher.on_trial_complete(trial["id"], result={**result, "done": True})
            else:
                searcher.on_trial_result(trial["id"], result)
        if stop or epoch >= spec.max_t:
            asha.on_trial_complete(None, Trial(trial["id"]), result)
            finished += 1
            if finished in marks:
                saves[finished] = save_state(searcher, folder, stock)
        else:
            live.append(trial)
    return records, saves


def at_mark(records, mark: int, window: int) -> dict:
    """Mean suggest and tell (wall and CPU) per trial over the trials suggested with [mark - window, mark) finished."""
    chosen = [r for r in records if mark - window <= r["finished"] < mark]
    n = max(1, len(chosen))
    return {
        "trials": len(chosen),
        "suggest": sum(r["suggest"].wall for r in chosen) / n,
        "tell": sum(r["tell"].wall for r in chosen) / n,
        "cpu": sum(r["suggest"].cpu + r["tell"].cpu for r in chosen) / n,
        "epochs": sum(r["epochs"] for r in chosen) / n,
        "quality": sum(r["quality"] for r in chosen) / n,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40 trials (a test)")
    parser.add_argument("--trials", type=int, default=None, help="finished trials to reach (default 1,000)")
    parser.add_argument("--concurrency", type=int, default=2, help="trials running at once (default 2)")
    parser.add_argument("--window", type=int, default=50, help="trials averaged before each mark (default 50)")
    parser.add_argument(
        "--sampler",
        choices=("project", "stock", "exact"),
        default="project",
        help="stock: Optuna's TPE and Ray's save; exact: the project's TPE with a fit per suggestion",
    )
    args = parser.parse_args(argv)
    trials = args.trials or (40 if args.quick else 1000)
    window = min(args.window, max(10, trials // 4))
    marks = sorted({m for m in (100, 250, 500, 1000, 2000, 5000) if m < trials} | {trials})
    spec = wide_spec(trials, args.concurrency)
    load_before = common.load()
    with tempfile.TemporaryDirectory(prefix="bench-searcher-") as folder:
        searcher, asha = make(spec, folder, args.sampler)
        started = time.perf_counter()
        records, saves = feed(
            searcher, asha, spec, trials, args.concurrency, marks, Path(folder), args.sampler == "stock"
        )
        wall = time.perf_counter() - started
    print(
        common.machine(
            f"{trials} trials, wide space ({len(spec.space)} parameters), {args.sampler} searcher, "
            f"{args.concurrency} at a time, ASHA max_t {spec.max_t} grace {spec.asha.grace_period} "
            f"rf {spec.asha.reduction_factor}, {wall:.0f} s in all"
        )
    )
    print(f"# loads: before {load_before}, after {common.load()}")
    return report(records, saves, marks, window, trials)


def report(records, saves: dict, marks: list[int], window: int, trials: int) -> float:
    """The table per mark and the RESULT line; returns suggest + tell at the last mark (ms)."""
    rows = []
    for mark in marks:
        m, (save_s, size) = at_mark(records, mark, window), saves[mark]
        total = m["suggest"] + m["tell"]
        rows.append(
            [
                f"{mark:,}",
                f"{1000 * m['suggest']:.1f}",
                f"{1000 * m['tell']:.1f}",
                f"**{1000 * total:.1f}**",
                f"{1000 * m['cpu']:.1f}",
                f"{m['epochs']:.1f}",
                f"{m['quality']:.3f}",
                f"{1000 * save_s:.1f} ms, {size / 1024:,.0f} KB",
            ]
        )
    print(f"\nper trial, mean of the {window} trials suggested before each mark (ms)")
    common.table(HEADERS, rows)
    last = at_mark(records, trials, window)
    ms = 1000 * (last["suggest"] + last["tell"])
    common.result(f"searcher_ms_at_{trials}", ms, f"<={GOAL_MS:.0f}", ms <= GOAL_MS)
    return ms


if __name__ == "__main__":
    main()
