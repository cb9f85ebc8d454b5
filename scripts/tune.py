#!/usr/bin/env python
"""Run a hyperparameter search: a thin wrapper around search.cli (installed as `twobirds-tune`)."""

import sys

from search.cli import main

if __name__ == "__main__":
    sys.exit(main())
