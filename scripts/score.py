#!/usr/bin/env python
"""Score a challenge submission: the gates, per-sample validity and exact solution coverage.

    python scripts/score.py result.pt --scoring ../shared/twobirds/validation_dataset.pt
    python scripts/score.py ../shared/twobirds/sample_submission.pt          # its own y as conditions
    python scripts/score.py result.pt --scoring FILE --json

--scoring is the file whose y gives the conditions: a file with one condition per row (its x
serve as the true solutions when they reproduce y), or a submission itself (its repeated rows
count once). Without --scoring the submission's own y is used.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Check a submission against the challenge's gates and measure per-sample validity and "
        "coverage of the exact solution branches.",
        epilog="Exit status: 0 scored (whether or not the gates pass), 2 bad input.",
    )
    parser.add_argument("submission", type=Path, help="the submission .pt file (TensorDataset(x, y))")
    parser.add_argument(
        "--scoring",
        type=Path,
        help="file whose y holds the conditions: one per row (e.g. validation_dataset.pt) or a "
        "submission (repeated rows count once); default: the submission itself",
    )
    parser.add_argument(
        "--functions",
        nargs=2,
        metavar="EXPR",
        help="condition functions (default: 'cos(49*x0 + 42*x1)' 'cos(56*x0 + 63*x1)')",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=30,
        metavar="S",
        help="samples per condition the submission must have (default 30, the challenge's); another count is refused",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    parser.add_argument("--json-out", type=Path, metavar="FILE", help="also write the JSON object to FILE")
    return parser.parse_args(argv)


def _mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _row(label: str, value: str, detail: str = "") -> str:
    return f"  {label:<50} {value}" + (f"  ({detail})" if detail else "")


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:5.1f}%"


def text_report(r: dict) -> str:
    n, s = r["conditions"], r["samples_per_condition"]
    total = n * s
    per = r["per_sample"]
    rmse = r["overall_rmse"]
    lines = [
        f"submission: {r['submission']} ({r['rows']} rows = {n} conditions x {s} samples)",
        f"conditions: {r['scoring']}: {r['conditions_note']}",
        f"functions:  {r['functions'][0]}, {r['functions'][1]}",
        "",
        "Challenge gates (judged over the whole result; the score is 0 unless all pass)",
        _row(
            "x0 descending and x1 ascending, every sample",
            _mark(r["gate_monotone"]),
            f"x0 {round(per['descending'] * total)}/{total}, x1 {round(per['ascending'] * total)}/{total}",
        ),
        _row(
            "straight lines (Pearson |r| > 0.8), every sample",
            _mark(r["gate_straight"]),
            f"{round(per['straight'] * total)}/{total}",
        ),
        _row("overall RMSE of f(x) vs y < 0.1", _mark(r["gate_rmse"]), "nan" if rmse is None else f"{rmse:.5f}"),
        _row("all gates", _mark(r["gates_pass"])),
        "",
        "Per sample",
        f"  x0 descending        {_pct(per['descending'])}",
        f"  x1 ascending         {_pct(per['ascending'])}",
        f"  straight             {_pct(per['straight'])}",
        f"  RMSE < 0.1           {_pct(per['rmse_below_0.1'])}",
        f"  valid (all four)     {_pct(per['valid'])}  ({round(per['valid'] * total)}/{total})",
        "  sample RMSE          median {median}, 90th percentile {p90}, max {max}".format(
            **{k: "n/a" if v is None else f"{v:.4f}" for k, v in r["sample_rmse"].items()}
        ),
        "",
    ]
    if r["coverage"] is not None:
        branches = [c["branches"] for c in r["per_condition"]]
        lines += [
            "Coverage of the exact solution branches",
            "(a branch is hit when a valid sample's line endpoints lie within 0.05 of it)",
            f"  branches per condition  median {r['branches_median']:g} (min {min(branches)}, max {max(branches)})",
            f"  coverage                {_pct(r['coverage'])}  mean share of each condition's branches hit",
            f"  coverage_norm           {_pct(r['coverage_norm'])}  hits / min(branches, {s}): "
            f"what {s} samples can reach",
            "",
        ]
    if r["coverage_note"]:
        lines += [r["coverage_note"], ""]
    if r.get("score") is not None:
        lines.append(
            f"search score: {r['score']:.4f}  (1[gates] + 0.4 valid + 0.4 coverage_norm + 0.2 max(0, 1 - RMSE))"
        )
    return "\n".join(lines)


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def main(argv=None) -> int:
    args = parse_args(argv)
    from cvae.data import DataFileError
    from cvae.functions import FunctionSyntaxError
    from cvae.submission import SubmissionError, score_submission

    try:
        if args.samples < 1:
            raise SubmissionError(f"--samples must be a positive integer, got {args.samples}")
        result = score_submission(args.submission, args.scoring, args.functions, samples_per_condition=args.samples)
    except (SubmissionError, DataFileError, FunctionSyntaxError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(_clean(result), indent=2, allow_nan=False) + "\n")
    if args.json:
        print(json.dumps(_clean(result), allow_nan=False))
    else:
        print(text_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
