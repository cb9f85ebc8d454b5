"""Where may ASHA compare trials? (issue 26) The objective at each epoch against the same trial's last report.

ASHA stops a trial at a rung by its objective there, so a rung is only as good as that epoch's ranking of the
trials by how they end. For the trials of finished searches that ran to their last epoch, this prints, per
epoch, the Spearman rank correlation between the objective at that epoch and at the last (Tune's progress.csv
of each trial folder; no model is loaded), and, with `--by KEY`, the objective at `--rung` and at the end for
each value of a configuration key (e.g. wy_delay, whose y-term starts late). Trials ASHA stopped are not in it
(their end is unknown): what it measures is how the survivors would have been ranked.

    .venv/bin/python bench/rung_alignment.py runs/seed0/search runs/seed1/search --rung 12 --by wy_delay
"""

from __future__ import annotations

import argparse
from pathlib import Path

import common
import pandas as pd
from objective_alignment import GOAL, spearman
from robust_choice import trial_rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", type=Path, nargs="+", help="finished search folders <storage>/<name>")
    parser.add_argument("--rung", type=int, nargs="+", default=[3, 12], help="epochs to judge (default 3 12)")
    parser.add_argument("--by", help="a configuration key to break the objective down by, e.g. wy_delay")
    return parser.parse_args(argv)


def finished_trials(experiments: list[Path]) -> pd.DataFrame:
    """One row per trial that reached its search's last epoch: the objective at every epoch, its last, and its
    configuration (columns config/...)."""
    rows = []
    for folder in experiments:
        trials = [(row, history) for row, history in trial_rows(folder) if len(history)]
        last = max((int(history["epoch"].max()) for _, history in trials), default=0)
        for row, history in trials:
            if int(history["epoch"].max()) < last:
                continue
            scores = history.set_index("epoch")[str(row["metric"])]
            config = {k: v for k, v in row.items() if str(k).startswith("config/")}
            rows.append({**config, **{int(k): v for k, v in scores.items()}, "last": scores.iloc[-1]})
    return pd.DataFrame(rows)


def by_epoch(trials: pd.DataFrame) -> list[tuple[int, int, float]]:
    """(epoch, trials, Spearman of the objective there against the last)."""
    epochs = sorted(c for c in trials.columns if isinstance(c, int))
    out = []
    for epoch in epochs[:-1]:
        known = trials[[epoch, "last"]].dropna()
        out.append((epoch, len(known), spearman(known[epoch].tolist(), known["last"].tolist())))
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    for folder in args.experiments:
        if not (folder / "results.csv").is_file():
            raise SystemExit(f"{folder}: no results.csv; pass a finished search's folder <storage>/<name>")
    trials = finished_trials(args.experiments)
    print(common.machine(f"{len(trials)} trials that ran to the end, from {len(args.experiments)} searches"))
    if trials.empty:
        raise SystemExit("no trial of these searches ran to its last epoch: nothing to rank")
    rows = by_epoch(trials)
    common.table(["epoch", "trials", "Spearman with the last"], [[str(e), str(n), f"{rho:.3f}"] for e, n, rho in rows])
    if args.by:
        key = f"config/{args.by}"
        headers = [args.by, "trials", *[f"median at {r}" for r in args.rung], "median last"]
        groups = sorted(trials.groupby(key), key=lambda kv: kv[0])
        lines = [
            [
                f"{value:g}" if isinstance(value, float | int) else str(value),
                str(len(g)),
                *[f"{g[r].median():.4f}" for r in args.rung],
                f"{g['last'].median():.4f}",
            ]
            for value, g in groups
        ]
        common.table(headers, lines)
    found = {e: rho for e, _, rho in rows}
    for rung in args.rung:
        rho = found.get(rung, float("nan"))
        common.result(f"rung_spearman_at_{rung}", f"{rho:.3f}", f">= {GOAL}", rho >= GOAL)
    return 0


if __name__ == "__main__":
    main()
