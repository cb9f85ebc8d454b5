#!/usr/bin/env python
"""Run a hyperparameter search: a thin wrapper around search.cli (also installed as `twobirds-tune`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python scripts/tune.py` from a fresh clone

from search.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
