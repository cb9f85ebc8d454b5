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
import sys
from pathlib import Path

PROG = "twobirds-score"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG,
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


def score(args) -> int:
    from cvae.scorecard import submission_text
    from cvae.submission import plain, score_submission

    result = plain(score_submission(args.submission, args.scoring, args.functions, samples_per_condition=args.samples))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    print(json.dumps(result, allow_nan=False) if args.json else submission_text(result))
    return 0


def main(argv=None) -> int:
    from cvae.errors import run_command

    args = parse_args(argv)
    return run_command(PROG, lambda: score(args))


if __name__ == "__main__":
    sys.exit(main())
