"""What a longer search buys (issue 26, item 1): the laptop space at several time budgets, each best
configuration finalized the same way and scored in every regime on official rows.

For each budget (default 6, 20 and 60 minutes) the main job's own steps run (scripts/demo.py: the search with that
--time-budget, then finalize on --final-rows rows for at most --final-epochs epochs within --final-time-budget, its
loss compiled), and the final model is scored on official validation rows 0-49 and 1000-1499 (30 samples each,
never trained on) in the three regimes of bench/official.py: network only, network + check (K=300), network +
refinement (K=30, 20 LM steps). Prints a markdown table (configuration chosen, trials, wall times, load) and
RESULT lines: quality (cvae.metrics' score, averaged over the row blocks) rises with the budget in every
regime, and the longest budget's model beats the shortest's in every regime.

    flock /work/bench.lock .venv/bin/python bench/search_budget.py --out runs/budget      # ~1 h 45 min on 2 cores
    .venv/bin/python bench/search_budget.py --num-samples 1000 --seed 1   # each budget, not 40 trials, ends its search
    .venv/bin/python bench/search_budget.py --quick                                         # the smoke space, ~1-2 min

Each budget's folder (<out>/b<minutes>/) keeps its search and final model; a budget whose final model exists
is scored again without rerunning (delete its folder to start it over).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import itertools

from bench.common import SMOKE, machine, result, table
from bench.official import BLOCKS, REGIMES, official_rows, row_blocks, score
from cvae.functions import FunctionPair
from cvae.inputs import number_at_least
from cvae.train import load_model
from scripts import demo
from search.driver.files import BEST_CONFIG, FINAL, MODEL, RESULTS_CSV
from search.trials import read_results

LAPTOP = demo.REPO / "search" / "configs" / "laptop.yaml"
SHOWN = ("latent", "components", "hidden", "depth", "batch_size", "lr", "condition_features", "prior_temperature")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", default="6,20,60", help="search budgets in minutes (default 6,20,60)")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/budget"), help="folder of the runs (default runs/budget)"
    )
    parser.add_argument("--config", type=Path, default=LAPTOP, help="search file (default the laptop space)")
    parser.add_argument("--final-rows", type=int, default=100_000, help="finalize's rows (default 100000, as demo)")
    parser.add_argument(
        "--final-epochs",
        type=int,
        default=demo.FINAL_EPOCHS,
        help=f"finalize's epochs at most (default {demo.FINAL_EPOCHS}, as demo)",
    )
    parser.add_argument(
        "--final-steps",
        type=int,
        default=demo.FINAL_STEPS,
        help=f"finalize's steps (default {demo.FINAL_STEPS}, as demo)",
    )
    parser.add_argument(
        "--final-time-budget",
        type=float,
        default=demo.FINAL_SECONDS,
        help=f"finalize --time-budget (default {demo.FINAL_SECONDS:g}, as demo)",
    )
    parser.add_argument(
        "--final-max-lr",
        type=number_at_least(float, 0),
        default=demo.FINAL_MAX_LR,
        help=f"finalize --max-lr (default {demo.FINAL_MAX_LR:g}, as demo)",
    )
    parser.add_argument(
        "--final-compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="finalize --compile (default on, as demo; off with --quick)",
    )
    parser.add_argument("--seed", type=int, help="demo.py --seed for every budget (default the search file's)")
    parser.add_argument(
        "--num-samples",
        type=int,
        help="trials at most for every budget (default the search file's; the laptop file's 40 ends a 20-minute "
        "search early, so give a long budget more)",
    )
    parser.add_argument("--rows", default=BLOCKS, help=f"official row blocks (default {BLOCKS})")
    parser.add_argument("--quick", action="store_true", help="smoke space, two tiny budgets, 3 rows (no timing)")
    parser.add_argument("--json", type=Path, help="write every measured row here too")
    return parser.parse_args(argv)


def one_minute_load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def budget_run(minutes: float, out: Path, args) -> dict:
    """The main job's search and finalize for one budget; returns wall times, load and the chosen configuration."""
    experiment, final = out / "search", out / FINAL
    times, loads = {}, {"before": one_minute_load()}
    if not (final / MODEL).is_file():
        started = time.perf_counter()
        search_file = args.config if args.seed is None else demo.seeded_search_file(args.config, args.seed, out)
        if not (experiment / RESULTS_CSV).is_file():
            storage = ["--name", "search", "--storage", out, "--time-budget", minutes * 60]
            if args.num_samples:
                storage += ["--num-samples", args.num_samples]
            demo.run("scripts/tune.py", "--config", search_file, *storage)
        times["search_s"] = time.perf_counter() - started
        loads["after_search"] = one_minute_load()
        started = time.perf_counter()
        options = demo.finalize_options(experiment, args)
        demo.run("scripts/finalize.py", "--experiment", experiment, "--out", final, "--quiet", *options)
        times["finalize_s"] = time.perf_counter() - started
    loads["after"] = one_minute_load()
    import yaml

    best = yaml.safe_load((experiment / BEST_CONFIG).read_text())
    trials = len(read_results(experiment / RESULTS_CSV))
    return {"minutes": minutes, "times": times, "loads": loads, "best": best, "trials": trials}


def scored(final_model: Path, blocks) -> list[dict]:
    model = load_model(final_model, "cpu")
    functions = FunctionPair(model.config.functions)
    rows = []
    for label, x, y in official_rows(blocks, functions):
        rows += [{"rows": label, **row} for row in score(model, x, y, functions)]
    return rows


def quality(rows: list[dict], kind: str) -> float:
    """cvae.metrics' score of one regime (gates + 0.4 valid + 0.4 coverage_norm + 0.2 closeness), mean over blocks."""
    values = [
        r["gates_pass"] + 0.4 * r["valid_frac"] + 0.4 * r["coverage_norm"] + 0.2 * max(0.0, 1 - r["overall_rmse"])
        for r in rows
        if r["kind"] == kind
    ]
    return sum(values) / len(values)


def print_tables(runs: list[dict]) -> None:
    headers = ["budget", "trials", "configuration chosen", "search", "finalize", "load (1 min) before / after"]
    cells = []
    for run in runs:
        chosen = ", ".join(f"{k} {run['best'][k]}" for k in SHOWN if k in run["best"])
        times = [f"{run['times'][k] / 60:.1f} min" if k in run["times"] else "kept" for k in ("search_s", "finalize_s")]
        span = f"{run['loads']['before']} / {run['loads']['after']}"
        cells.append([f"{run['minutes']:g} min", str(run["trials"]), chosen, *times, span])
    table(headers, cells)
    headers = ["budget", "rows", "regime", "gates", "valid", "overall RMSE", "coverage_norm"]
    cells = []
    for run in runs:
        for r in run["scores"]:
            numbers = [f"{r[k]:.3f}" for k in ("valid_frac", "overall_rmse", "coverage_norm")]
            cells.append([f"{run['minutes']:g} min", r["rows"], r["regime"], "pass" if r["gates_pass"] else "FAIL"])
            cells[-1] += numbers
    table(headers, cells)


def results(runs: list[dict]) -> None:
    for regime in REGIMES:
        values = [quality(run["scores"], regime.kind) for run in runs]
        name = regime.kind
        rising = all(b >= a for a, b in itertools.pairwise(values))
        # four decimals: at three a gain of +0.0003 showed as 0.000 and read as a tie met
        result(f"quality_rises_with_budget_{name}", "/".join(f"{v:.4f}" for v in values), "non-decreasing", rising)
        gain = values[-1] - values[0]
        result(f"longest_minus_shortest_{name}", f"{gain:+.4f}", "> 0", gain > 0)


def main(argv=None) -> int:
    args = parse_args(argv)
    print(machine())
    budgets = [1.0, 1.5] if args.quick else [float(b) for b in args.budgets.split(",")]
    blocks = row_blocks("0-2" if args.quick else args.rows)
    if args.quick:
        args.config, args.final_rows, args.final_epochs, args.final_compile = SMOKE, 300, 1, False
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) if args.quick else args.out.resolve()
        runs = []
        for minutes in budgets:
            out = root / f"b{minutes:g}"
            run = budget_run(minutes, out, args)
            run["scores"] = scored(out / FINAL / MODEL, blocks)
            runs.append(run)
    print_tables(runs)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(runs, indent=1, default=str))
    results(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
