#!/usr/bin/env python
"""A real multi-node Ray cluster on one host: a head and N workers, each its own `ray start` process.

Every node is a separate `ray start --block` process group (its own raylet, object store and
workers, its own CPU count and custom resources) on 127.0.0.1, with a private Ray temp dir, token
authentication on and nothing listening beyond 127.0.0.1. It behaves like a small cluster of
machines sharing a folder (as NFS would be): searches join it with --address, and a worker can be
killed to rehearse a node failure.

    python -m cluster start --dir /tmp/rc-demo --head-cpus 1 --worker-cpus 2 1
    source /tmp/rc-demo/env.sh      # RAY_ADDRESS, token auth, loopback (see `env_for_driver`)
    python scripts/tune.py --config search/configs/smoke.yaml --name demo \\
        --storage /tmp/rc-demo/shared --address "$RAY_ADDRESS"
    python -m cluster status --dir /tmp/rc-demo
    python -m cluster kill-worker --dir /tmp/rc-demo --index 1   # SIGKILL its raylet
    python -m cluster stop --dir /tmp/rc-demo

`stop` ends only this cluster's processes (its process groups, then any Ray process still naming its
temp dir); it never calls `ray stop`, which would end every Ray on the machine.
The same module is imported by tests/test_cluster.py (class `LocalCluster`); the command line is
cluster/cli.py's, processes are read through psutil (cluster/processes.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if not __package__:  # run as `python -m cluster`: the repo's packages, as scripts/tune.py
    sys.path.insert(0, str(REPO))

from cluster.processes import alive, ancestors, command_line, descendants, naming  # noqa: E402
from cvae.errors import UserError  # noqa: E402
from search.driver.compat import LOOPBACK_SWITCH  # noqa: E402
from search.driver.files import write_private  # noqa: E402

LOOPBACK_RAY = HERE / "loopback_ray.py"
HOST = "127.0.0.1"
STATE_FILE = "cluster.json"
ENV_FILE = "env.sh"
TOKEN_FILE = "auth_token"
STARTED = "Ray runtime started"
# Inherited settings that would point the nodes or the driver at another Ray.
DROPPED_ENV = (
    "RAY_ADDRESS",
    "RAY_AUTH_MODE",
    "RAY_AUTH_TOKEN",
    "RAY_AUTH_TOKEN_PATH",
    "RAY_NAMESPACE",
    LOOPBACK_SWITCH,  # set for drivers only: `ray start` of a worker refuses it
)
# Ray's Unix socket paths live under the temp dir and must stay below ~107 characters.
MAX_DIR_LEN = 40


class ClusterError(UserError):
    """The local cluster could not start, or a node died while starting."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --- the cluster ------------------------------------------------------------------------------


@dataclass
class Node:
    """One `ray start --block` process; its pid is also its process-group id (a new session)."""

    name: str
    head: bool
    cpus: float
    gpus: float = 0
    resources: dict = field(default_factory=dict)
    pid: int | None = None
    log: str = ""

    def alive(self) -> bool:
        return self.pid is not None and alive(self.pid)

    def processes(self) -> dict[int, str]:
        """pid -> name of the node's processes: raylet, its workers (trials), agents, GCS on the head."""
        return descendants(self.pid) if self.pid else {}

    def raylet_pid(self) -> int | None:
        return next((pid for pid, comm in self.processes().items() if comm == "raylet"), None)


class LocalCluster:
    """Start, inspect, break and stop a multi-node Ray cluster on 127.0.0.1.

    root: a short folder (Ray's socket paths grow under it) holding the Ray temp dir, the node
    logs, the token, env.sh and cluster.json. Use as a context manager to always stop it.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        head_cpus: float = 1,
        worker_cpus: tuple[float, ...] | list[float] = (2,),
        object_store_mb: int = 256,
        dashboard: bool = False,
        port: int | None = None,
        node_env: dict | None = None,
    ):
        self._own_root = root is None  # a temporary folder: removed on leaving a `with` block
        self.root = Path(root or tempfile.mkdtemp(prefix="rc-", dir="/tmp")).resolve()
        if len(str(self.root)) > MAX_DIR_LEN:
            raise ClusterError(f"--dir {self.root}: keep it under {MAX_DIR_LEN} characters (Ray's socket paths)")
        self.port = port or free_port()
        self.object_store_mb = object_store_mb
        self.dashboard = dashboard
        self.dashboard_port = free_port() if dashboard else None
        self.node_env = dict(node_env or {})
        self._procs: dict[str, subprocess.Popen] = {}
        self.nodes = [Node("head", True, head_cpus)]
        for i, cpus in enumerate(worker_cpus, 1):
            self.nodes.append(Node(f"worker{i}", False, cpus, resources={"worker": 1, f"worker{i}": 1}))

    # paths and environments

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def temp_dir(self) -> Path:
        return self.root / "ray"

    @property
    def token_path(self) -> Path:
        return self.root / TOKEN_FILE

    @property
    def workers(self) -> list[Node]:
        return [n for n in self.nodes if not n.head]

    @property
    def head(self) -> Node:
        return self.nodes[0]

    def _auth_env(self) -> dict:
        return {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.token_path),
            "RAY_USAGE_STATS_ENABLED": "0",
        }

    def env_for_nodes(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
        return {**env, **self._auth_env(), **self.node_env}

    def env_for_driver(self, base: dict | None = None) -> dict:
        """The environment of a driver (scripts/tune.py --address ...) that joins this cluster.

        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 only stops ray.init from rewriting the loopback
        address to the host's routable IP (where nothing listens); a driver starts no node.
        """
        env = {k: v for k, v in (os.environ if base is None else base).items() if k not in DROPPED_ENV}
        env.update(self._auth_env())
        env.update({"RAY_ADDRESS": self.address, LOOPBACK_SWITCH: "0"})
        return env

    # lifecycle

    def start(self, timeout: float = 90) -> LocalCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        self.temp_dir.mkdir(exist_ok=True)
        write_private(self.token_path, secrets.token_hex(32))  # kept when it exists already
        try:
            for node in self.nodes:
                self._start_node(node, timeout)
        except BaseException:
            self.stop()
            raise
        self._write_state()
        return self

    def _ray_start_args(self, node: Node) -> list[str]:
        args = [
            f"--node-ip-address={HOST}",
            f"--num-cpus={node.cpus:g}",
            f"--num-gpus={node.gpus:g}",
            f"--temp-dir={self.temp_dir}",
            f"--object-store-memory={self.object_store_mb * 1024 * 1024}",
            "--min-worker-port=0",
            "--max-worker-port=0",
            "--disable-usage-stats",
            "--block",
        ]
        if node.resources:
            args.append("--resources=" + json.dumps(node.resources))
        if node.head:
            args += [f"--port={self.port}", f"--ray-client-server-port={free_port()}"]
            if self.dashboard:
                args += [
                    "--include-dashboard=true",
                    f"--dashboard-host={HOST}",
                    f"--dashboard-port={self.dashboard_port}",
                ]
            else:
                args.append("--include-dashboard=false")
        else:
            args.append(f"--address={self.address}")
        if self.dashboard:  # one agent per node: give each its own ports on one host
            args += [
                f"--dashboard-agent-listen-port={free_port()}",
                f"--dashboard-agent-grpc-port={free_port()}",
            ]
        return args

    def _start_node(self, node: Node, timeout: float) -> None:
        node.log = str(self.root / f"{node.name}.log")
        command = [
            sys.executable,
            str(LOOPBACK_RAY),
            "start",
            *(["--head"] if node.head else []),
            *self._ray_start_args(node),
        ]
        with open(node.log, "w") as log:
            proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env_for_nodes(),
                start_new_session=True,
                cwd=self.root,
            )
        node.pid = proc.pid
        self._procs[node.name] = proc  # kept so the exit status is collected (no zombies)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = Path(node.log).read_text(errors="replace")
            if STARTED in text and node.raylet_pid():
                return
            if proc.poll() is not None:
                raise ClusterError(
                    f"{node.name}: `ray start` exited with {proc.returncode}; see {node.log}:\n{text[-2000:]}"
                )
            time.sleep(0.2)
        raise ClusterError(f"{node.name}: not started after {timeout:.0f}s; see {node.log}")

    def kill_raylet(self, node: Node, sig: int = signal.SIGKILL) -> int:
        """Kill a node's raylet (default SIGKILL, as a crashed machine); `ray start --block` then
        ends the node's other processes, trials included. Returns the raylet's pid."""
        pid = node.raylet_pid()
        if pid is None:
            raise ClusterError(f"{node.name}: no raylet running")
        os.kill(pid, sig)
        return pid

    def wait_dead(self, node: Node, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not node.alive() and not node.processes():
                return True
            time.sleep(0.2)
        return False

    def stop(self, timeout: float = 20) -> None:
        """End this cluster's processes only: workers first, then the head; SIGTERM, then SIGKILL."""
        for node in reversed(self.nodes):
            if node.alive():
                _signal_group(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(n.alive() for n in self.nodes):
            time.sleep(0.2)
        for node in self.nodes:
            if node.pid is not None:
                _signal_group(node.pid, signal.SIGKILL)
        for proc in self._procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        # Any Ray process of this cluster that left the process groups (its command names the temp dir).
        mine = ancestors()
        for pid in naming(str(self.temp_dir) + "/"):
            if pid not in mine:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *_) -> None:
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    # state for the CLI

    def _write_state(self) -> None:
        state = {
            "address": self.address,
            "port": self.port,
            "root": str(self.root),
            "dashboard_port": self.dashboard_port,
            "nodes": [asdict(n) for n in self.nodes],
        }
        (self.root / STATE_FILE).write_text(json.dumps(state, indent=2))
        lines = [f"export {k}={v}" for k, v in self.env_for_driver(base={}).items()]
        (self.root / ENV_FILE).write_text(
            '# source this file, then: python scripts/tune.py ... --address "$RAY_ADDRESS"\n' + "\n".join(lines) + "\n"
        )

    @classmethod
    def load(cls, root: str | Path) -> LocalCluster:
        state = json.loads((Path(root) / STATE_FILE).read_text())
        cluster = cls.__new__(cls)
        cluster.root = Path(state["root"])
        cluster.port = state["port"]
        cluster.dashboard_port = state.get("dashboard_port")
        cluster.dashboard = cluster.dashboard_port is not None
        cluster.object_store_mb, cluster.node_env, cluster._procs, cluster._own_root = 0, {}, {}, False
        cluster.nodes = [Node(**n) for n in state["nodes"]]
        for node in cluster.nodes:  # a pid reused by another program is not ours
            if node.pid and str(cluster.root) not in command_line(node.pid):
                node.pid = None
        return cluster


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# --- inspecting the running cluster (in a fresh process, cluster/inspect_cluster.py) -------------


def inspect(cluster: LocalCluster, timeout: float = 60) -> dict:
    """{'nodes': [...], 'actors': [...]} as the cluster's GCS knows them (dead actors included)."""
    out = subprocess.run(
        [sys.executable, "-m", "cluster.inspect_cluster", cluster.address],  # values as arguments, never as code
        env={**cluster.env_for_driver(), "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cluster.root,
    )
    for line in out.stdout.splitlines():
        if line.startswith("INSPECT"):
            return json.loads(line[len("INSPECT") :])
    raise ClusterError(f"inspect failed ({out.returncode}):\n{out.stderr[-3000:]}")
