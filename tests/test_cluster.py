"""The search on a real multi-node Ray cluster: separate `ray start` processes on 127.0.0.1.

One cluster for the module (cluster/local_cluster.py): a head with 1 CPU and a worker with 2 CPUs
and a custom resource, a private temp dir, token auth, a shared storage folder (as NFS would be).
Trials are told apart by node through Ray itself: each trial result carries the pid of the
process that ran it, and the GCS actor table maps that pid to a node id (both nodes share the
IP 127.0.0.1). The worker is killed last (SIGKILL to its raylet), so the tests run in file order.

Deselect with -m "not cluster"; the module took 1.5 to 2.5 minutes on 2 cores (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from cluster.local_cluster import LocalCluster, inspect
from search.trials import read_results

pytestmark = pytest.mark.cluster

# The GCS declares a dead node after ~4 s instead of ~18 s with the defaults (test speed only).
FAST_FAILURE_DETECTION = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}
DRIVER_TIMEOUT = 240
# Tune logs a result's row and registers its checkpoint as two steps, in either order, so when a
# trial's process dies its last logged epoch E and its last registered checkpoint can differ by
# one: the retried trial goes on at epoch E (that epoch redone), E + 1, or E + 2 (a row never
# logged). Never at epoch 1: the failures are triggered after a trial's second epoch, when the
# first epoch's checkpoint is registered for sure.


# --- helpers ----------------------------------------------------------------------------------


def search_file(smoke: Path, folder: Path, name: str, trials: int, epochs: int) -> Path:
    """smoke.yaml made into `trials` trials of exactly `epochs` epochs that each last ~10 s here.

    Long enough to outlast a trial process's start on a busy 2-core machine: the search reuses
    trial processes (reuse_actors), so a trial that ends before the other nodes' processes are up
    hands its own process the next trial, and the search would never leave the first node.
    grace_period = max_t: ASHA stops no trial early. max_concurrent_trials null: fill the cluster.
    """
    raw = yaml.safe_load(smoke.read_text())
    raw["search"].update(num_samples=trials, max_concurrent_trials=None)
    raw["asha"].update(max_t=epochs, grace_period=epochs)
    raw["data"].update(train_size=20000)
    raw["fixed"].update(hidden=256, depth=2)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def start_driver(
    repo: Path, cluster: LocalCluster, config: Path | None, name: str, storage: Path, *extra: str
) -> subprocess.Popen:
    """scripts/tune.py --address <cluster>, as a user runs it from the checkout (its own process group, killable)."""
    log = open(cluster.root / f"driver-{name}-{time.monotonic_ns()}.log", "w")  # noqa: SIM115 (closed in finish_driver)
    command = [sys.executable, "scripts/tune.py", *(["--config", str(config)] if config else [])]
    command += ["--name", name, "--storage", str(storage), "--address", cluster.address, *extra]
    proc = subprocess.Popen(
        command, cwd=repo, env=cluster.env_for_driver(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    proc.log = log
    return proc


def kill_driver(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    proc.log.close()


def finish_driver(proc: subprocess.Popen, timeout: float = DRIVER_TIMEOUT) -> str:
    try:
        proc.wait(timeout=timeout)
    finally:
        kill_driver(proc)
    text = Path(proc.log.name).read_text(errors="replace")
    assert proc.returncode == 0, f"tune.py exited {proc.returncode}:\n{text[-6000:]}"
    return text


def read_rows(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line being written
            rows.append(json.loads(line))
    return rows


def live_results(cluster: LocalCluster, name: str) -> dict[str, list[dict]]:
    """trial_id -> result rows so far, from the driver's staging folder (Tune's JsonLogger)."""
    pattern = f"session_latest/artifacts/*/{name}/driver_artifacts/*/result.json"
    out = {}
    for path in cluster.temp_dir.glob(pattern):
        rows = read_rows(path)
        if rows:
            out[rows[0]["trial_id"]] = rows
    return out


def final_results(experiment: Path) -> dict[str, list[dict]]:
    """trial_id -> every result row, from the shared storage after the search."""
    out = {}
    for path in experiment.glob("*/result.json"):
        rows = read_rows(path)
        if rows:
            out[rows[0]["trial_id"]] = rows
    return out


def experiment_state(experiment: Path) -> dict[str, dict]:
    """trial_id -> {'status', 'max_failures', 'num_failures'} from Tune's experiment state."""
    latest = max(experiment.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    out = {}
    for trial_json, run_json in json.loads(latest.read_text())["trial_data"]:
        trial, run = json.loads(trial_json), json.loads(run_json)
        out[trial["trial_id"]] = {
            "status": trial["status"],
            "max_failures": trial["max_failures"],
            "num_failures": run["num_failures"],
        }
    return out


def nodes_by_pid(cluster: LocalCluster) -> tuple[dict[int, str], dict]:
    """pid -> node id of every actor the cluster ran (Tune's trial actors among them), and inspect's data."""
    data = inspect(cluster)
    return {a["pid"]: a["node_id"] for a in data["actors"] if a["pid"]}, data


def listening(pids: set[int]) -> list[tuple[str, str]]:
    """(local address, process) of every TCP/UDP socket the given processes listen on."""
    out = subprocess.run(["ss", "-H", "-ltnup"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        for pid in pids:
            if f"pid={pid}," in line:
                found.append((line.split()[4], line.split()[-1]))
    return found


def host_of(local_address: str) -> str:
    host = local_address.rsplit(":", 1)[0].strip("[]")
    return host.removeprefix("::ffff:")


# --- the cluster ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    root = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))  # short: Ray's socket paths grow under it
    local = LocalCluster(root, head_cpus=1, worker_cpus=(2,), node_env=FAST_FAILURE_DETECTION)
    try:
        started = time.monotonic()
        local.start()
        local.start_seconds = time.monotonic() - started
        yield local
    finally:
        local.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def drivers(repo):
    """Start drivers through this fixture: whatever still runs when the test ends is killed."""
    started = []

    def start(*args, **kwargs):
        started.append(start_driver(repo, *args, **kwargs))
        return started[-1]

    yield start
    for proc in started:
        kill_driver(proc)


@pytest.fixture(scope="module")
def shared(cluster):
    """The storage every node writes to: one folder, as an NFS mount would be."""
    path = cluster.root / "shared"
    path.mkdir()
    return path


def test_two_nodes_with_their_own_resources(cluster):
    nodes = inspect(cluster)["nodes"]
    assert len(nodes) == 2, nodes
    assert all(n["alive"] for n in nodes), nodes
    head = next(n for n in nodes if n["head"])
    worker = next(n for n in nodes if not n["head"])
    assert head["node_id"] != worker["node_id"]
    assert head["resources"]["CPU"] == 1
    assert "worker" not in head["resources"]
    assert worker["resources"]["CPU"] == 2
    assert worker["resources"]["worker"] == 1
    assert {head["ip"], worker["ip"]} == {"127.0.0.1"}


def test_nothing_listens_beyond_loopback_and_token_auth_is_on(cluster):
    pids = {pid for node in cluster.nodes for pid in [node.pid, *node.processes()]}
    sockets = listening(pids)
    assert sockets, "found no listening sockets of the cluster's processes"
    outside = [(a, p) for a, p in sockets if not ipaddress.ip_address(host_of(a)).is_loopback]
    assert not outside, f"listening beyond 127.0.0.1: {outside}"
    assert cluster.token_path.stat().st_mode & 0o777 == 0o600
    # A driver with a wrong token is refused (RAY_NUM_REDIS_GET_RETRIES: give up after ~3 s, not 20).
    env = cluster.env_for_driver()
    env.pop("RAY_AUTH_TOKEN_PATH")
    env.update(
        RAY_AUTH_TOKEN="not-the-cluster-token",
        HOME=str(cluster.root / "nohome"),
        RAY_NUM_REDIS_GET_RETRIES="3",
    )
    code = f"import ray; ray.init(address='{cluster.address}'); print('CONNECTED')"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "CONNECTED" not in done.stdout
    assert "Authentication token is missing or incorrect" in done.stderr, done.stderr[-3000:]


def test_search_places_trials_on_every_node(cluster, shared, tmp_path, drivers, smoke):
    """Three trial slots (1 on the head, 2 on the worker) filled at once: both nodes must run trials."""
    config = search_file(smoke, tmp_path, "spread", trials=3, epochs=6)
    started = time.monotonic()
    log = finish_driver(drivers(cluster, config, "spread", shared))
    wall = time.monotonic() - started

    experiment = shared / "spread"
    table = read_results(experiment / "results.csv")
    assert len(table) == 3, table
    assert set(table["status"]) == {"TERMINATED"}, table
    assert {"trial_id", "status", "stop_reason", "epochs", "node", "score"} <= set(table.columns)
    assert table["node"].notna().all()  # the IP: 127.0.0.1 for both nodes here, so the node id tells them apart

    by_pid, data = nodes_by_pid(cluster)
    node_ids = {n["node_id"] for n in data["nodes"]}
    trial_nodes = {}
    results = final_results(experiment)
    for trial_id, rows in results.items():
        nodes = {by_pid[row["pid"]] for row in rows}
        assert len(nodes) == 1, (trial_id, nodes)
        trial_nodes[trial_id] = nodes.pop()
    assert set(trial_nodes) == set(table["trial_id"])
    if set(trial_nodes.values()) != node_ids:
        rows = {t: [(r["epoch"], r["pid"], by_pid[r["pid"]][:8], r["date"]) for r in rs] for t, rs in results.items()}
        pytest.fail(f"trials ran on {set(trial_nodes.values())}, nodes {node_ids}: {rows}\n{log[-5000:]}")
    if "node_id" in table:  # recorded by the search itself
        assert dict(zip(table["trial_id"], table["node_id"])) == trial_nodes
    state = experiment_state(experiment)
    assert all(s["max_failures"] >= 1 for s in state.values()), state
    per_node = {node: sum(1 for n in trial_nodes.values() if n == node) for node in node_ids}
    print(
        f"FIGURES placement: nodes=2 trials={len(table)} per_node={sorted(per_node.values())} "
        f"wall_s={wall:.0f} cluster_start_s={cluster.start_seconds:.0f}"
    )


def pid_switch(rows: list[dict]) -> int | None:
    """Index of the first result a different process reported (the trial was retried), or None."""
    return next((i for i in range(1, len(rows)) if rows[i]["pid"] != rows[i - 1]["pid"]), None)


def saved_epochs(experiment: Path) -> dict[str, int]:
    """trial_id -> last epoch in the experiment state Tune saved on the shared storage (0: none yet)."""
    out = {}
    for path in experiment.glob("experiment_state-*.json"):
        try:
            trials = json.loads(path.read_text())["trial_data"]
        except (json.JSONDecodeError, KeyError):  # being written
            continue
        for trial_json, run_json in trials:
            last = json.loads(run_json).get("last_result") or {}
            out[json.loads(trial_json)["trial_id"]] = int(last.get("epoch") or 0)
    return out


def test_killed_driver_resumes_on_the_cluster(cluster, shared, tmp_path, drivers, smoke):
    """SIGKILL the driver once Tune has saved a trial's progress on the shared storage; `--resume`
    against the same cluster finishes every trial, continuing from the checkpoints."""
    max_t, trials = 6, 2
    config = search_file(smoke, tmp_path, "resume", trials=trials, epochs=max_t)
    experiment = shared / "resume"
    started = time.monotonic()
    first = drivers(cluster, config, "resume", shared)
    saved = {}
    while time.monotonic() - started < DRIVER_TIMEOUT and first.poll() is None:
        saved = {t: e for t, e in saved_epochs(experiment).items() if 2 <= e < max_t}
        if saved:
            break
        time.sleep(0.2)
    assert saved, "Tune saved no unfinished trial's progress before the search ended"
    kill_driver(first)
    killed_at = time.monotonic() - started
    saved = {t: e for t, e in saved_epochs(experiment).items() if t in saved and e < max_t}  # as resume reads it
    assert saved, "the saved trials all finished before the driver was killed"
    finish_driver(drivers(cluster, None, "resume", shared, "--resume"))
    wall = time.monotonic() - started

    table = read_results(experiment / "results.csv")
    assert len(table) == trials, table
    assert set(table["status"]) == {"TERMINATED"}, table
    assert set(table["epochs"]) == {max_t}, table
    results = final_results(experiment)
    for trial_id, epoch in saved.items():
        epochs = [(r["epoch"], r["iterations_since_restore"]) for r in results[trial_id]]
        restored = [e for e, since_restore in epochs if since_restore == 1]
        assert epochs[-1][0] == max_t, (trial_id, epochs)
        assert restored, f"{trial_id} restarted instead of resuming: {epochs}"
        assert restored[-1] > 1, f"{trial_id} restarted instead of resuming: {epochs}"
        # From the saved checkpoint: see CHECKPOINT_LAG.
        assert epoch <= restored[-1] <= epoch + 2, (trial_id, epoch, epochs)
    print(f"FIGURES driver-resume: trials={len(table)} killed_at_s={killed_at:.0f} saved={saved} wall_s={wall:.0f}")


def _kill_worker_mid_trial(cluster, worker, driver, started, max_t):
    """SIGKILL the worker's raylet once a trial on it reported 2+ epochs: ({trial id: its epoch}, seconds in)."""
    victims = {}
    while time.monotonic() - started < DRIVER_TIMEOUT and driver.poll() is None:
        on_worker = worker.processes()
        for trial_id, rows in live_results(cluster, "failover").items():
            last = rows[-1]
            if last["pid"] in on_worker and not last.get("done") and 2 <= last["epoch"] < max_t:
                victims[trial_id] = last["epoch"]
        if victims:
            cluster.kill_raylet(worker)
            return victims, time.monotonic() - started
        time.sleep(0.2)
    seen = {t: [(r["epoch"], r["pid"]) for r in rows] for t, rows in live_results(cluster, "failover").items()}
    log = Path(driver.log.name).read_text(errors="replace")[-4000:]
    pytest.fail(f"no trial on the worker reported an epoch: results {seen}, worker {worker.processes()}\n{log}")


def test_worker_killed_mid_search_loses_no_trial(cluster, shared, tmp_path, drivers, smoke):
    """SIGKILL the worker's raylet once a trial on it has reported 2 epochs: every trial still
    finishes, and the ones that ran there continue from their checkpoint on the head."""
    max_t, trials = 6, 2
    config = search_file(smoke, tmp_path, "failover", trials=trials, epochs=max_t)
    worker = cluster.workers[0]
    started = time.monotonic()
    driver = drivers(cluster, config, "failover", shared)
    victims, killed_at = _kill_worker_mid_trial(cluster, worker, driver, started, max_t)
    assert cluster.wait_dead(worker), f"{worker.name} still has processes: {worker.processes()}"
    finish_driver(driver)
    wall = time.monotonic() - started

    experiment = shared / "failover"
    table = read_results(experiment / "results.csv")
    assert {s["status"] for s in experiment_state(experiment).values()} == {"TERMINATED"}
    lost = trials - int((table["status"] == "TERMINATED").sum())
    assert lost == 0, table
    assert len(table) == trials, table
    assert set(table["epochs"]) == {max_t}, table
    assert set(table["stop_reason"]) == {"finished"}, table

    by_pid, data = nodes_by_pid(cluster)
    head_id = next(n["node_id"] for n in data["nodes"] if n["head"])
    results = final_results(experiment)
    resumed = []
    for trial_id in victims:
        rows = results[trial_id]
        epochs = [r["epoch"] for r in rows]
        assert epochs[-1] == max_t, (trial_id, epochs)
        switch = pid_switch(rows)
        if switch is None:
            continue  # finished before the node died (the kill raced its last epochs)
        # its failure came after progress, so search/driver/retries.py forgave it: Tune's num_failures is back to 0
        before, after = epochs[switch - 1], epochs[switch]
        # Restored from the last checkpoint, the epochs continue: see CHECKPOINT_LAG.
        history = [(r["epoch"], r["pid"], r["iterations_since_restore"]) for r in rows]
        assert before <= after <= before + 2, f"{trial_id}: (epoch, pid, iterations_since_restore) {history}"
        assert rows[switch]["iterations_since_restore"] == 1
        assert rows[switch]["training_iteration"] > 1
        assert by_pid[rows[switch]["pid"]] == head_id  # retried on the surviving node
        resumed.append((trial_id, before, after))
    assert resumed, f"no trial resumed from a checkpoint: victims {victims}"
    retried = {t for t, rows in results.items() if pid_switch(rows) is not None}  # ran in a second process
    # A retried trial with no result before the failure had no checkpoint yet: it restarts at epoch 1.
    from_checkpoint = {t for t in retried if (i := pid_switch(results[t])) is not None and results[t][i]["epoch"] > 1}
    print(
        f"FIGURES failover: nodes=2 trials={len(table)} killed_at_s={killed_at:.0f} retried={len(retried)} "
        f"from_checkpoint={len(from_checkpoint)} restarted={len(retried - from_checkpoint)} "
        f"resumed={resumed} lost={lost} wall_s={wall:.0f}"
    )
