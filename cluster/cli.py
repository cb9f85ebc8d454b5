"""The command line of cluster/local_cluster.py (`python -m cluster`): start, status, kill-worker, stop.

    python -m cluster start --dir /tmp/rc-demo --head-cpus 1 --worker-cpus 2 1
    python -m cluster status --dir /tmp/rc-demo

A problem the user can fix (a folder in use, no cluster
there, a worker that does not exist, a node that fails to start) is one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cluster.local_cluster import ENV_FILE, HOST, MAX_DIR_LEN, STATE_FILE, ClusterError, LocalCluster, inspect
from cvae.errors import run_command

PROG = "python -m cluster"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Start, inspect, break or stop a multi-node Ray cluster on 127.0.0.1 (one `ray start` per node).",
        epilog="then: source DIR/env.sh; "
        'python scripts/tune.py --config ... --storage DIR/shared --address "$RAY_ADDRESS"',
    )
    sub = p.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a head and workers; writes DIR/env.sh and DIR/cluster.json")
    start.add_argument(
        "--dir",
        required=True,
        help=f"a short, new folder (under {MAX_DIR_LEN} characters), e.g. /tmp/rc-demo",
    )
    start.add_argument("--head-cpus", type=float, default=1, help="CPUs of the head node (default 1)")
    start.add_argument(
        "--worker-cpus",
        type=float,
        nargs="*",
        default=[2],
        metavar="C",
        help="one value per worker node: its CPUs (default: one worker with 2)",
    )
    start.add_argument("--port", type=int, help="the head's GCS port (default: a free one)")
    start.add_argument("--object-store-mb", type=int, default=256, help="object store per node (default 256)")
    start.add_argument(
        "--dashboard",
        action="store_true",
        help="start the dashboard on 127.0.0.1 (needs ray[default]); needed by `ray job submit`",
    )
    commands = {
        "status": "nodes and actors as the GCS knows them (JSON)",
        "stop": "stop every node",
        "kill-worker": "SIGKILL one worker's raylet, as a crashed machine",
    }
    for name, text in commands.items():
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--dir", required=True)
        if name == "kill-worker":
            cmd.add_argument("--index", type=int, default=1, help="worker number, from 1 (default 1)")
    return p


def start(args) -> None:
    if (Path(args.dir) / STATE_FILE).exists() and any(n.alive() for n in LocalCluster.load(args.dir).nodes):
        raise ClusterError(f"--dir {args.dir}: a cluster is already running there; stop it first")
    cluster = LocalCluster(args.dir, args.head_cpus, args.worker_cpus, args.object_store_mb, args.dashboard, args.port)
    cluster.start()
    for node in cluster.nodes:
        extra = f" {node.resources}" if node.resources else ""
        print(f"{node.name}: {node.cpus:g} CPUs{extra}, pid {node.pid}, log {node.log}")
    print(f"address {cluster.address}; token {cluster.token_path} (0600)")
    if cluster.dashboard:
        print(f"dashboard http://{HOST}:{cluster.dashboard_port}")
    print(f'source {cluster.root / ENV_FILE}   # then pass --address "$RAY_ADDRESS" to scripts/tune.py')


def running(folder: str) -> LocalCluster:
    if not (Path(folder) / STATE_FILE).exists():
        raise ClusterError(f"--dir {folder}: no {STATE_FILE}; was a cluster started there?")
    return LocalCluster.load(folder)


def kill_worker(cluster: LocalCluster, index: int) -> None:
    if not 1 <= index <= len(cluster.workers):
        raise ClusterError(f"--index {index}: this cluster has workers 1 to {len(cluster.workers)}")
    node = cluster.workers[index - 1]
    print(f"{node.name}: killed raylet {cluster.kill_raylet(node)}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        if args.command == "start":
            start(args)
            return 0
        cluster = running(args.dir)
        if args.command == "stop":
            cluster.stop()
            print(f"stopped {len(cluster.nodes)} nodes of {cluster.root}")
        elif args.command == "status":
            print(json.dumps(inspect(cluster), indent=2))
        elif args.command == "kill-worker":
            kill_worker(cluster, args.index)
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
