#!/usr/bin/env python
"""Start the search, or resume it if it already exists: the entry point of a search run as a job.

A job runs its command again when it is retried or re-submitted (a RayJob applied again, a
`ray job submit` repeated after the head node or the driver died). scripts/tune.py would then
refuse a second start ("already exists; pass --resume"); this adds --resume exactly when
<storage>/<name> holds a saved search, and otherwise runs scripts/tune.py's command line unchanged.

    python cluster/run_search.py --config search/configs/cluster.yaml --name big \\
        --storage s3://bucket/runs --address auto
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's search/, as scripts/tune.py

from search.cli import main, parser
from search.driver.files import SEARCH_CONFIG
from search.driver.storage import Storage


def command_line(argv: list[str]) -> list[str]:
    """scripts/tune.py's arguments, plus --resume when the experiment was started before."""
    args = parser().parse_args(argv)
    if not args.resume and Storage(args.storage).exists(args.name, SEARCH_CONFIG):
        print(f"run_search: {args.storage}/{args.name} exists: resuming it", file=sys.stderr)
        return [*argv, "--resume"]
    return list(argv)


if __name__ == "__main__":
    sys.exit(main(command_line(sys.argv[1:])))
