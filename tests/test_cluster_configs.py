"""cluster/ files, checked offline: the launcher YAMLs pass `ray up`'s own validation, the KubeRay
manifests are sound ray.io/v1 objects, token auth is on everywhere, nothing binds beyond loopback."""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import runpy
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import ray.autoscaler
import yaml

from cluster import local_cluster, loopback_ray
from cluster.local_cluster import ClusterError, LocalCluster
from cluster.processes import alive, descendants
from cluster.run_search import command_line
from search.driver.compat import validated_launcher_config

CLUSTER = Path(local_cluster.__file__).parent  # the checkout's cluster/
LAUNCHERS = {"aws": "s3://", "gcp": "gs://"}  # provider -> the scheme of its shared storage
KUBERAY = CLUSTER / "kuberay"
IMAGE_HOME = "/home/ray/twobirds"  # where cluster/Dockerfile puts the repo
IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")


def launcher(name: str) -> dict:
    return yaml.safe_load((CLUSTER / f"{name}.yaml").read_text())


def manifests(file: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((KUBERAY / file).read_text()) if doc]


def cluster_files():
    return sorted(p for p in CLUSTER.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def start_commands(config: dict) -> list[str]:
    return config["head_start_ray_commands"] + config["worker_start_ray_commands"]


# --- nothing binds all interfaces -------------------------------------------------------------


@pytest.mark.parametrize("path", cluster_files(), ids=lambda p: str(p.relative_to(CLUSTER.parent)))
def test_no_unspecified_address(path):
    text = path.read_text()
    for address in IPV4.findall(text):
        ip = ipaddress.ip_address(address)
        assert not ip.is_unspecified, f"{path.name}: binds all interfaces ({address})"
    assert not re.search(r"host[=:]\s*['\"]?::['\"]?(\s|$)", text), f"{path.name}: binds all IPv6 interfaces"
    for host in re.findall(r"dashboard-host[=:]\s*['\"]?([^\s'\"]+)", text):
        assert host in ("127.0.0.1", "{HOST}"), f"{path.name}: dashboard on {host}"  # local_cluster.HOST


def test_local_cluster_is_loopback_only():
    assert local_cluster.HOST == "127.0.0.1"
    assert loopback_ray.keep_loopback("127.0.0.1") == loopback_ray.keep_loopback("localhost") == "127.0.0.1"


# --- the cluster launcher YAMLs ---------------------------------------------------------------


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_matches_rays_schema(name):
    """The schema `ray up` validates against, shipped inside the ray package."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(ray.autoscaler.__path__[0]) / "ray-schema.json").read_text())
    jsonschema.validate(launcher(name), schema)


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_passes_ray_up_validation(name):
    """What `ray up` does before it calls the cloud: merge the provider's defaults, then validate.

    Keys left out fall back to Ray's defaults, whose head command binds the dashboard to all
    interfaces: so the merged config, not only the file, must keep it on 127.0.0.1.
    """
    config = validated_launcher_config(copy.deepcopy(launcher(name)))
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    for address in IPV4.findall(json.dumps(config)):
        assert not ipaddress.ip_address(address).is_unspecified, address


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_has_cpu_and_gpu_workers_within_bounds(name):
    config = launcher(name)
    assert config["provider"]["type"] == name
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    workers = {k: v for k, v in types.items() if k != config["head_node_type"]}
    gpu = [k for k, v in workers.items() if v["resources"].get("GPU", 0) >= 1]
    cpu = [k for k, v in workers.items() if not v["resources"].get("GPU") and v["resources"].get("CPU", 0) > 0]
    assert gpu, workers
    assert cpu, workers
    for kind, spec in workers.items():
        assert 0 <= spec["min_workers"] <= spec["max_workers"] <= config["max_workers"], kind
    assert sum(spec["min_workers"] for spec in workers.values()) <= config["max_workers"]


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_installs_the_project_everywhere(name):
    config = launcher(name)
    assert config["file_mounts"]["~/twobirds-dist"] == "./dist"  # built by `pip wheel --no-deps -w dist .`
    setups = [config["setup_commands"]]  # node types with their own worker_setup_commands replace it
    setups += [
        t["worker_setup_commands"] for t in config["available_node_types"].values() if "worker_setup_commands" in t
    ]
    for commands in setups:
        assert any(re.search(r"pip install .*~/twobirds-dist/twobirds_search-\*\.whl", c) for c in commands)
        assert any(re.search(r"pip install .*torch==", c) for c in commands)  # pinned, as in the Makefile
    version = ray.__version__
    images = [config["docker"]["image"]]
    images += [t["docker"]["worker_image"] for t in config["available_node_types"].values() if "docker" in t]
    assert all(image.startswith(f"rayproject/ray:{version}-") for image in images), images


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_turns_token_auth_on_and_shares_cloud_storage(name):
    config = launcher(name)
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    for command in start_commands(config):
        if "ray start" in command:
            assert "RAY_AUTH_MODE=token" in command, command
            assert f"TWOBIRDS_STORAGE={LAUNCHERS[name]}" in command, command
    head = next(c for c in config["head_start_ray_commands"] if "ray start" in c)
    assert "--head" in head
    assert "--dashboard-host=127.0.0.1" in head


# --- the KubeRay manifests --------------------------------------------------------------------


def ray_pods(raycluster: dict) -> list[dict]:
    spec = raycluster["spec"]
    return [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]


def test_raycluster_manifest():
    docs = manifests("raycluster.yaml")
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"PersistentVolumeClaim", "RayCluster"}
    pvc, rc = kinds["PersistentVolumeClaim"], kinds["RayCluster"]
    assert rc["apiVersion"] == "ray.io/v1"
    assert rc["metadata"]["name"]
    spec = rc["spec"]
    assert spec["rayVersion"] == ray.__version__
    assert spec["authOptions"]["mode"] == "token"
    head = spec["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP"
    groups = spec["workerGroupSpecs"]
    assert len({g["groupName"] for g in groups}) == len(groups)
    for group in [head, *groups]:
        assert all(isinstance(v, str) for v in group["rayStartParams"].values()), group["rayStartParams"]
    for group in groups:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
    limits = [g["template"]["spec"]["containers"][0]["resources"]["limits"] for g in groups]
    assert any("nvidia.com/gpu" in lim for lim in limits)
    assert any("nvidia.com/gpu" not in lim for lim in limits)
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    mounts = set()
    for pod in ray_pods(rc):
        container = pod["containers"][0]
        assert container["image"]
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        for mount in container["volumeMounts"]:
            if claims.get(mount["name"]) == pvc["metadata"]["name"]:
                mounts.add(mount["mountPath"])
    assert len(mounts) == 1, f"every Ray pod must mount the shared volume at one path: {mounts}"


def test_rayjob_manifest_runs_the_search_on_that_cluster(repo):
    (job,) = manifests("rayjob.yaml")
    (rc,) = [d for d in manifests("raycluster.yaml") if d["kind"] == "RayCluster"]
    assert job["apiVersion"] == "ray.io/v1"
    assert job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["clusterSelector"] == {"ray.io/cluster": rc["metadata"]["name"]}
    assert spec["submissionMode"] in {"K8sJobMode", "HTTPMode", "SidecarMode"}
    words = shlex.split(spec["entrypoint"])
    script = words[1]
    assert words[0] == "python"
    assert script == f"{IMAGE_HOME}/cluster/run_search.py"
    args = command_line(words[2:])  # parses as scripts/tune.py's command line
    option = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--")}
    assert (repo / option["--config"].removeprefix(IMAGE_HOME + "/")).is_file()
    mount = rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["mountPath"]
    assert option["--storage"].startswith(mount + "/"), "the storage must be the shared volume"
    assert option["--address"] == "auto"


def test_dockerfile_pins_ray_and_torch_as_the_project_does(repo):
    text = (CLUSTER / "Dockerfile").read_text()
    assert f"ARG BASE=rayproject/ray:{ray.__version__}-" in text
    torch_pin = re.search(r"TORCH_PIN := (\S+)", (repo / "Makefile").read_text()).group(1)
    assert f"pip install --no-cache-dir {torch_pin}" in text
    copied = re.findall(r"^COPY \S+ (\S+)", text, flags=re.M)
    assert ".venv" not in copied
    assert "." not in copied
    for folder in ("cvae", "search", "scripts", "cluster"):
        assert folder in copied
    for doc in manifests("raycluster.yaml"):
        for pod in ray_pods(doc) if doc["kind"] == "RayCluster" else []:
            assert pod["containers"][0]["image"].endswith(("-cpu", "-gpu"))


# --- the scripts ------------------------------------------------------------------------------


def test_run_search_resumes_only_an_existing_experiment(tmp_path):
    argv = ["--config", "search/configs/smoke.yaml", "--name", "x", "--storage", str(tmp_path)]
    assert command_line(argv) == argv
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "search_config.yaml").write_text("functions: []\n")
    assert command_line(argv) == [*argv, "--resume"]
    assert command_line([*argv, "--resume"]) == [*argv, "--resume"]


@pytest.mark.parametrize("argv", [["--help"], ["start", "--help"]])
def test_local_cluster_cli_help(argv, run_main):
    done = run_main("cluster", *argv)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout, done.stderr


def test_python_dash_m_cluster_runs_the_cli(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["python -m cluster", "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("cluster", run_name="__main__", alter_sys=True)  # cluster/__main__.py, as `python -m`
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("usage: python -m cluster "), capsys.readouterr()


def test_local_cluster_cli_errors_are_one_line(tmp_path, one_line_error):
    line = one_line_error("cluster", "status", "--dir", tmp_path, message="no cluster.json")
    assert (
        line.ran.stderr
        == f"python -m cluster: error: --dir {tmp_path}: no cluster.json; was a cluster started there?\n"
    )
    state = {"address": "127.0.0.1:1", "port": 1, "root": str(tmp_path), "dashboard_port": None}
    state["nodes"] = [{"name": "head", "head": True, "cpus": 1}, {"name": "worker1", "head": False, "cpus": 2}]
    (tmp_path / "cluster.json").write_text(json.dumps(state))
    line = one_line_error("cluster", "kill-worker", "--dir", tmp_path, "--index", "2", message="--index 2")
    assert line == "python -m cluster: error: --index 2: this cluster has workers 1 to 1"
    line = one_line_error("cluster", "kill-worker", "--dir", tmp_path, message="worker1")  # no process of it runs
    assert line == "python -m cluster: error: worker1: no raylet running"


def test_processes_of_a_node_include_its_orphans_and_not_its_zombies():
    """A node's processes: its tree, plus members of its process group whose parent is gone."""
    script = "sleep 60 & (sleep 60 &) ; exec sleep 60"  # a child, an orphan in the group, then sleep itself
    proc = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(descendants(proc.pid)) < 2:
            time.sleep(0.05)
        below = descendants(proc.pid)
        assert len(below) == 2, below
        assert set(below.values()) == {"sleep"}, below
        assert proc.pid not in below
        assert alive(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and descendants(proc.pid):
        time.sleep(0.05)
    assert not descendants(proc.pid)
    assert not alive(proc.pid)  # killed, not yet waited for: a zombie
    proc.wait()


def test_local_cluster_refuses_a_long_dir():
    """Ray's Unix socket paths grow under the temp dir; a long one fails late and obscurely."""
    with pytest.raises(ClusterError, match="characters"):
        LocalCluster("/tmp/" + "x" * 60)


def test_local_cluster_driver_env_has_token_auth_and_no_foreign_address(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "someone-elses")
    local = LocalCluster(f"/tmp/rc-{os.getpid()}", port=6399)
    env = local.env_for_driver()
    assert env["RAY_ADDRESS"] == "127.0.0.1:6399"
    assert env["RAY_AUTH_MODE"] == "token"
    assert "RAY_AUTH_TOKEN" not in env
    assert env["RAY_AUTH_TOKEN_PATH"].endswith("/auth_token")
    assert "RAY_ADDRESS" not in local.env_for_nodes()
