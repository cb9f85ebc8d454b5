#!/usr/bin/env python
"""Compare search experiments: how fast each found its best, what it found, which parameters mattered.

    twobirds-compare runs/A runs/B [--out DIR] [--json]

Writes compare.png (the best so far against the seconds trials ran and against the trials), importances.png
(PED-ANOVA importances side by side) and compare.md (the tables) into --out (default ./compare). Reads the
experiments' optuna.journal (read-only), results.csv, best_config.yaml and, where finalize ran, final/report.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cvae.errors import run_command

PROG = "twobirds-compare"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Compare search experiments side by side: best so far against time and trials, each best "
        "configuration and its final scores in every regime (where twobirds-finalize ran), and the parameter "
        "importances. Only the experiments' own trials count (not those a --warm-start copied in).",
        epilog="example: twobirds-compare runs/laptop runs/laptop2 --out runs/compare",
    )
    parser.add_argument("experiments", nargs="+", metavar="DIR", help="experiment folders <storage>/<name>")
    parser.add_argument(
        "--out", type=Path, default=Path("compare"), metavar="DIR", help="where the files go (default ./compare)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the text summary")
    return parser.parse_args(argv)


def text(summary: dict) -> str:
    """The console's summary: one line per experiment, then the files written."""
    lines = []
    for e in summary["experiments"]:
        at = e["best_at"] or {}
        best = "no full-budget trial" if e["best"] is None else f"best {e['objective']} {e['best']:.4g}"
        where = f" at trial {at['trial']} ({at['seconds']:.0f} s of trials)" if at else ""
        warm = f", {e['warm_started']} warm-started" if e["warm_started"] else ""
        final = "finalized" if e["regimes"] else "not finalized"
        lines.append(f"{e['name']}: {e['trials']} trials ({e['complete']} complete{warm}), {best}{where}; {final}")
    lines += [f"wrote {Path(summary['out']) / f}" for f in summary["files"].values()]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)

    def body() -> int:
        from search.finalize.compare import compare  # after argparse: --help stays quick

        summary = compare(args.experiments, args.out)
        print(json.dumps(summary, indent=1) if args.json else text(summary))
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
