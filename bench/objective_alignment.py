"""Does the search optimise what the user is judged on? (issue 26, item 3)

For every trial of a finished search, its last checkpoint (the trial folder's highest checkpoint_*/trainer.pt,
loaded with the project's loader, weights_only) is scored network only on official validation rows (default
0-49 and 1000-1499, 30 samples each, never trained on); no retraining. The search objective of that same
checkpoint is the `val_score` its own history recorded at that epoch (synthetic validation conditions). The
Spearman rank correlation between the two, over the trials, says whether the search ranks models as the
challenge would; the results table's `score` (the objective's last report, what the search picks by) is
correlated too, over the trials whose checkpoint is their last epoch.

    .venv/bin/python bench/objective_alignment.py --experiment runs/demo/search
    .venv/bin/python bench/objective_alignment.py --quick       # a smoke search, seconds to a minute

A trial ASHA stopped between checkpoints is scored at its last checkpoint; one without any checkpoint is left
out and counted (search files' `checkpoint_every` that divides the ASHA rungs leaves none out).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SMOKE, load, machine, result, table
from bench.official import BLOCKS, official_rows, row_blocks, score
from cvae.functions import FunctionPair
from cvae.metrics import branches
from cvae.regimes import Regime
from cvae.train import load_checkpoint, load_model
from search.trials import read_results

CHECKPOINT = "trainer.pt"
GOAL = 0.7


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", type=Path, help="a search experiment folder <storage>/<name>")
    parser.add_argument("--rows", default=BLOCKS, help=f"official row blocks (default {BLOCKS})")
    parser.add_argument("--quick", action="store_true", help="run a smoke search first, score 3 rows (no timing)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    if not args.quick and args.experiment is None:
        parser.error("pass --experiment DIR (a finished search), or --quick")
    return args


def last_checkpoint(trial: Path) -> Path | None:
    """The trial folder's checkpoint of the highest index, None when it has none."""
    found = sorted(trial.glob(f"checkpoint_*/{CHECKPOINT}"), key=lambda p: p.parent.name)
    return found[-1] if found else None


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:  # undefined for fewer than 3 or constant values
        return math.nan
    return float(spearmanr(a, b).statistic)


def trial_rows(experiment: Path, blocks) -> tuple[list[dict], list[str]]:
    """One row per trial with a checkpoint: its run name, epoch, own val_score there, the results table's score,
    and network-only valid_frac / coverage_norm on the official rows (all blocks together); and the trials left
    out (no checkpoint)."""
    results = read_results(experiment / "results.csv")
    rows, skipped, cache = [], [], {}
    for record in results.to_dict("records"):
        path = last_checkpoint(experiment / str(record["run"]))
        if path is None:
            skipped.append(str(record["run"]))
            continue
        state = load_checkpoint(path)
        model = load_model(path, "cpu")
        functions = FunctionPair(model.config.functions)
        if functions.texts not in cache:
            conditions = official_rows(blocks, functions)
            cache[functions.texts] = [(x, y, branches(y, functions, x_true=x)) for _, x, y in conditions]
        valid = cover = 0.0
        for x, y, sets in cache[functions.texts]:
            net = score(model, x, y, functions, (Regime("network"),), branch_sets=sets)[0]
            valid += net["valid_frac"] * len(y)
            cover += net["coverage_norm"] * len(y)
        n = sum(len(y) for _, y, _ in cache[functions.texts])
        own = state["history"][-1] if state["history"] else {}
        rows.append(
            {
                "run": str(record["run"]),
                "epoch": int(state["epoch"]),
                "last_epoch": int(record["epochs"]),
                "val_score": float(own.get("val_score", math.nan)),
                "score": float(record["score"]),
                "valid_frac": valid / n,
                "coverage_norm": cover / n,
            }
        )
    return rows, skipped


def report(rows: list[dict], skipped: list[str], blocks_text: str, label: str) -> float:
    headers = ["trial", "checkpoint epoch", "last epoch", "val_score there", "search score", "valid", "coverage_norm"]
    ordered = sorted(rows, key=lambda r: -r["val_score"])
    cells = [[r["run"][:40], str(r["epoch"]), str(r["last_epoch"])] for r in ordered]
    for cell, r in zip(cells, ordered):
        cell += [f"{r[k]:.3f}" for k in ("val_score", "score", "valid_frac", "coverage_norm")]
    print(f"network only on official rows {blocks_text}, 30 samples each; {len(skipped)} trial(s) without checkpoint")
    table(headers, cells)
    own = spearman([r["val_score"] for r in rows], [r["valid_frac"] for r in rows])
    cover = spearman([r["val_score"] for r in rows], [r["coverage_norm"] for r in rows])
    same = [r for r in rows if r["epoch"] == r["last_epoch"]]
    last = spearman([r["score"] for r in same], [r["valid_frac"] for r in same])
    print(load())
    result(f"spearman_val_score_vs_official_valid_{label}", own, f">= {GOAL}", own >= GOAL)
    result(f"spearman_val_score_vs_official_coverage_{label}", cover, f">= {GOAL}", cover >= GOAL)
    result(f"spearman_search_score_vs_official_valid_{label}", last, f">= {GOAL}", last >= GOAL)
    result(f"trials_scored_{label}", float(len(rows)), ">= 3", len(rows) >= 3)
    return own


def quick_experiment(storage: Path) -> Path:
    from search import run_search

    run_search(str(SMOKE), "alignment", str(storage))
    return storage / "alignment"


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    print(machine(f"{args.threads} torch thread(s)"))
    blocks_text = "0-2" if args.quick else args.rows
    blocks = row_blocks(blocks_text)
    if args.quick:
        with tempfile.TemporaryDirectory() as folder:
            experiment = quick_experiment(Path(folder))
            rows, skipped = trial_rows(experiment, blocks)
    else:
        experiment = args.experiment
        rows, skipped = trial_rows(experiment, blocks)
    report(rows, skipped, blocks_text, experiment.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
