"""`python -m cluster start|status|kill-worker|stop`: a multi-node Ray cluster on 127.0.0.1 (cluster/cli.py)."""

import sys

from cluster.cli import main

sys.exit(main())
