"""Does a choice you can trust pay? (issue 25) On the wide space (search/configs/wide.yaml: both
latent families, where trials collapse or ignore their condition), at a reduced fidelity:

(a) robust finalize: over a few short searches, the optimism of best-of-N (the search's best score minus the
    mean of its configuration re-run with fresh seeds) and the final models of the lcb pick against the best
    pick (`twobirds-finalize --top-k K --seeds R`, search/finalize/choice.py). Goal: lcb's final models no
    worse on average than best's, with a smaller spread.
(b) failure-aware pruning: the same search with and without it (`failures.prune`), per seed: the trials and
    the compute (trial seconds) spent on failed trials, the best score, and the time to the lower of the two
    best scores. A trial counts as failed in both arms by the same rule (search.trials.failure over its
    epochs, or diverged). Goal: >= 30% less compute on failed trials at an equal or better best score.

Reduced fidelity (say so where the numbers go): the wide space and start points, --rows training rows,
max_t --max-t epochs (ASHA grace 1, factor 3), --budget / --pruning-budget seconds a search of (a) / (b);
finalize's retrain --final-rows rows
for --final-epochs epochs, scored on the search's validation conditions.

    .venv/bin/python bench/robust_choice.py [--quick] [--searches 3] [--budget 180] [--pruning-seeds 2]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import common
import pandas as pd
import yaml

from search.trials import read_results

WIDE = common.ROOT / "search" / "configs" / "wide.yaml"  # the former laptop space, of part (a)'s run
SAVING_GOAL = 0.30
FAILED_REASONS = {"collapsed", "ignores_condition", "diverged"}


def search_file(args, folder: Path, seed: int, prune: bool = True, budget: float | None = None) -> Path:
    """The bench's search file: the wide space (or the smoke space with --quick) at the reduced fidelity."""
    raw = yaml.safe_load((common.SMOKE if args.quick else WIDE).read_text())
    raw["data"]["train_size"] = args.rows
    budget = args.budget if budget is None else budget
    raw["search"].update(seed=seed, time_budget_s=budget, num_samples=args.trials, images="none")
    raw["search"]["max_concurrent_trials"] = 2
    raw["asha"] = {"max_t": args.max_t, "grace_period": 1, "reduction_factor": 3}
    raw["failures"] = {"prune": prune}
    path = folder / f"search-{seed}-{'prune' if prune else 'plain'}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_one(path: Path, storage: Path, name: str) -> tuple[Path, float]:
    """A real search (the project's run_search) on the Ray already running; (experiment folder, start time)."""
    from search import run_search

    started = time.time()
    folder = run_search(str(path), name, str(storage))
    return Path(folder), started


# --- (a) robust finalize ---


def final_score(config, data, args, metric: str) -> float:
    """The reduced finalize: `config` retrained on --final-rows rows for --final-epochs, its last validation."""
    from search.finalize.choice import rerun

    final = config.replace(epochs=args.final_epochs)
    train, val = data.replace(train_size=args.final_rows).build(final)
    return rerun(final, train, val, metric)


def one_choice(args, folder: Path) -> dict:
    """One search's re-runs, its lcb and best picks, and their final models' scores."""
    from search.finalize import load_experiment
    from search.finalize.choice import candidates, choose, pick

    experiment = load_experiment(folder)
    choice = choose(experiment, args.top_k, args.seeds, "lcb", log=lambda line: print("   ", line, flush=True))
    stats = choice["candidates"]
    pool = candidates(experiment, args.top_k)
    picks = {rule: pick(stats, rule, experiment.mode) for rule in ("best", "lcb")}
    finals = {}  # the same configuration retrained once: training is seeded, the result would not change
    for index in set(picks.values()):
        finals[index] = final_score(pool[index].config, experiment.search_data, args, choice["metric"])
    return {
        "trials": len(experiment.results),
        "search_best": choice["search_best"]["score"],
        "rerun_mean": stats[0]["mean"],
        "optimism": choice["optimism"],
        "lcb_rank": picks["lcb"] + 1,
        "final_best": finals[picks["best"]],
        "final_lcb": finals[picks["lcb"]],
        "rerun_seconds": choice["seconds"],
    }


def robust_choice(args, storage: Path) -> tuple[list, list[str]]:
    """Part (a): its table rows and RESULT lines."""
    rows = []
    for seed in range(args.searches):
        folder, _ = run_one(search_file(args, storage, seed), storage, f"choice-{seed}")
        out = one_choice(args, folder)
        out["seed"] = seed
        rows.append(out)
        print(f"# search {seed}: {out}", flush=True)
    common.table(
        ["search seed", "trials", "best: search score", "its re-run mean", "optimism", "lcb's pick (rank)",
         "final: best's pick", "final: lcb's pick", "re-runs s"],
        [[str(r["seed"]), str(r["trials"]), r["search_best"], r["rerun_mean"], r["optimism"], str(r["lcb_rank"]),
          r["final_best"], r["final_lcb"], r["rerun_seconds"]] for r in rows],
    )  # fmt: skip
    best, lcb = [r["final_best"] for r in rows], [r["final_lcb"] for r in rows]
    spread = (statistics.stdev(best), statistics.stdev(lcb)) if len(rows) > 1 else (math.nan, math.nan)
    differ = [r for r in rows if r["lcb_rank"] != 1]
    beats = sum(r["final_lcb"] > r["final_best"] for r in differ)
    print(
        f"# optimism of best-of-N: mean {statistics.fmean(r['optimism'] for r in rows):.4f}; final models: best's "
        f"mean {statistics.fmean(best):.4f} (std {spread[0]:.4f}), lcb's mean {statistics.fmean(lcb):.4f} "
        f"(std {spread[1]:.4f}); lcb picked another configuration in {len(differ)} of {len(rows)} searches, "
        f"whose final model beat best's in {beats}"
    )
    gain = statistics.fmean(lcb) - statistics.fmean(best)
    no_worse = gain >= -1e-12
    tighter = spread[1] < spread[0] or (spread[1] == spread[0] == 0)
    return rows, [
        common.result("best_of_n_optimism", statistics.fmean(r["optimism"] for r in rows), "reported", True),
        common.result("lcb_beats_best", f"{beats}/{len(differ)}", "reported", True),
        common.result("lcb_final_minus_best", gain, ">=0", no_worse),
        common.result("lcb_final_spread_vs_best", f"{spread[1]:.4f}/{spread[0]:.4f}", "smaller", tighter),
    ]


# --- (b) failure-aware pruning ---


def trial_rows(folder: Path) -> list[tuple[pd.Series, pd.DataFrame]]:
    """Each trial of an experiment: its results.csv row and its per-epoch history (progress.csv)."""
    table = read_results(folder / "results.csv")
    out = []
    for _, row in table.iterrows():
        progress = folder / str(row["run"]) / "progress.csv"
        history = pd.read_csv(progress) if progress.is_file() else pd.DataFrame()
        out.append((row, history))
    return out


def crossed(row: pd.Series, history: pd.DataFrame, limits: dict) -> str:
    """The same rule in both arms: the reason its signals crossed a threshold at first (search.trials.failure,
    as if pruning were on), the reason pruning stopped it, or "" for a trial that did not fail."""
    from search.trials import failure

    if str(row["stop_reason"]) in FAILED_REASONS:
        return str(row["stop_reason"])
    delay = int(row.get("config/wy_delay", 0) or 0)
    checked = {**limits, "prune": True}
    for _, epoch in history.iterrows():
        found = failure(epoch.to_dict(), checked, delay, str(row["metric"]))
        if found:
            return found[0]
    return ""


def signals(row: pd.Series, history: pd.DataFrame, reason: str, limits: dict) -> list:
    """A trial's closest approach to each threshold over the epochs judged (search.trials.failure's rule)."""
    delay = int(row.get("config/wy_delay", 0) or 0)
    epochs = history["epoch"] if len(history) else pd.Series(dtype=float)

    def low(values, first: int) -> str:
        values = values[epochs >= first] if len(history) else values
        return f"{values.min():.3g}" if len(values) and values.notna().any() else "-"

    def column(key):
        return history[key] if key in history else pd.Series(math.nan, index=history.index)

    first = max(limits["from_epoch"], delay + 1)
    gap = column("val_condition_gap") + 3 * column("val_condition_gap_se")
    return [str(row["trial_id"]), str(row.get("config/latent", "")), str(int(row["epochs"])),
            float(history["val_score"].max()), low(column("val_prior_components"), first),
            low(column("val_kl_max_dim"), first), low(gap, max(first, delay + limits["condition_epochs"])),
            reason or "-"]  # fmt: skip


def arm(folder: Path, started: float, limits: dict) -> dict:
    """One search's account: trials, failed trials and their seconds, best score and when each score came."""
    trials = [(r, h) for r, h in trial_rows(folder) if len(h)]  # a trial the budget ended before it began: none
    seconds = [float(r["time_total_s"]) if math.isfinite(r["time_total_s"]) else 0.0 for r, _ in trials]
    reasons = [crossed(r, h, limits) for r, h in trials]
    bad = [bool(reason) for reason in reasons]
    epochs = pd.concat([h[["timestamp", "val_score"]] for _, h in trials if len(h)], ignore_index=True)
    epochs["seconds"] = epochs["timestamp"] - started
    return {
        "trials": len(trials),
        "failed": sum(bad),
        "seconds": sum(seconds),
        "failed_seconds": sum(s for s, b in zip(seconds, bad) if b),
        "best": float(epochs["val_score"].max()),
        "epochs": epochs,
        "signals": [signals(r, h, reason, limits) for (r, h), reason in zip(trials, reasons)],
    }


def time_to(epochs: pd.DataFrame, target: float) -> float:
    hit = epochs[epochs["val_score"] >= target - 1e-12]
    return float(hit["seconds"].min()) if len(hit) else math.inf


def pruning(args, storage: Path) -> tuple[list, list[str]]:
    """Part (b): its table rows and RESULT lines."""
    from search.spec import load_search_config

    rows, totals = [], {True: [0.0, 0.0], False: [0.0, 0.0]}  # prune -> [failed seconds, best scores]
    measured = []  # every trial of the searches without pruning: how near it came to each threshold
    for seed in range(100, 100 + args.pruning_seeds):
        arms = {}
        for prune in (False, True):
            path = search_file(args, storage, seed, prune, args.pruning_budget)
            folder, started = run_one(path, storage, f"pruning-{seed}-{prune}")
            arms[prune] = arm(folder, started, load_search_config(path).failures.model_dump())
        target = min(a["best"] for a in arms.values())
        measured += arms[False]["signals"]
        for prune, a in arms.items():
            totals[prune][0] += a["failed_seconds"]
            totals[prune][1] += a["best"] / args.pruning_seeds
            rows.append(
                [str(seed), "on" if prune else "off", str(a["trials"]), str(a["failed"]), a["failed_seconds"],
                 a["seconds"], a["best"], time_to(a["epochs"], target)]
            )  # fmt: skip
    print("# the trials without pruning: each one's lowest signals over the epochs judged (after its wy_delay)")
    common.table(
        ["trial", "latent", "epochs", "best val_score", "min components", "min largest KL", "min gap + 3 s.e.",
         "crossed"],
        sorted(measured, key=lambda r: -r[3]),
    )  # fmt: skip
    common.table(
        ["search seed", "pruning", "trials", "failed trials", "failed trials' s", "all trials' s", "best val_score",
         "s to the lower best"],
        rows,
    )  # fmt: skip
    off, on = totals[False][0], totals[True][0]
    saving = 1 - on / off if off > 0 else math.nan
    equal_or_better = totals[True][1] >= totals[False][1] - 1e-12
    print(f"# failed trials' seconds: {off:.0f} without pruning, {on:.0f} with (saving {saving:.1%})")
    return rows, [
        common.result("pruning_best_minus_plain", totals[True][1] - totals[False][1], ">=0", equal_or_better),
        common.result("pruning_failed_compute_saving", saving, f">={SAVING_GOAL}", saving >= SAVING_GOAL),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the smoke space, one tiny search per part (tests)")
    parser.add_argument("--parts", default="ab", help="which parts to run: a, b or ab (default)")
    parser.add_argument("--searches", type=int, default=3, help="searches of part (a)")
    parser.add_argument("--pruning-seeds", type=int, default=2, help="search pairs of part (b)")
    parser.add_argument("--budget", type=float, default=180, help="seconds per search of part (a)")
    parser.add_argument("--pruning-budget", type=float, default=240, help="seconds per search of part (b)")
    parser.add_argument("--trials", type=int, default=40, help="trials per search (the budget ends it first)")
    parser.add_argument("--rows", type=int, default=4000, help="training rows of the searches and re-runs")
    parser.add_argument("--max-t", type=int, default=9, help="epochs of a full-length trial and of a re-run")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3, help="re-runs per configuration")
    parser.add_argument("--final-rows", type=int, default=8000)
    parser.add_argument("--final-epochs", type=int, default=18)
    args = parser.parse_args(argv)
    if args.quick:
        args.searches, args.pruning_seeds, args.budget, args.pruning_budget, args.trials = 1, 1, None, None, 3
        args.rows, args.max_t, args.top_k, args.seeds, args.final_rows, args.final_epochs = 384, 2, 2, 2, 384, 2
    loads = [common.load()]
    common.start_ray(2)
    started = time.perf_counter()
    choice_results, pruning_results = [], []
    with tempfile.TemporaryDirectory(prefix="bench-robust-") as folder:
        if "a" in args.parts:
            _, choice_results = robust_choice(args, Path(folder))
            loads.append(common.load())
        if "b" in args.parts:
            _, pruning_results = pruning(args, Path(folder))
            loads.append(common.load())
    common.stop_ray()
    print(
        common.machine(
            f"{'smoke' if args.quick else 'wide'} space, {args.rows} rows, max_t {args.max_t}, "
            f"{args.budget} / {args.pruning_budget} s a search of (a) / (b), top {args.top_k} x {args.seeds} "
            f"re-runs, final {args.final_rows} rows x {args.final_epochs} epochs; "
            f"{time.perf_counter() - started:.0f} s in all"
        )
    )
    print(f"# loads: {'; '.join(loads)}")
    for line in [*choice_results, *pruning_results]:
        print(line)
    return choice_results + pruning_results


if __name__ == "__main__":
    main()
