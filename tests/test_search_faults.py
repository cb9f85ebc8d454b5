"""Faults around a real local search (issue 14 items 4, 13, 14): scripts/tune.py as a user runs it.

- item 4: a resume unpickles nothing of a folder this project did not sign; a replaced
  searcher-state pickle never runs, and a failed restore (with --trust) is one line, not a hang;
- item 13: after the driver is SIGKILLed, no process of the Ray it started stays alive, and
  --resume (of the signed state) finishes the search;
- item 14: the local Ray's token lives in the run's own temporary folder (0600), never in ~/.ray.
"""

import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.driver import local_ray, trust
from search.trials import read_results

MARKER_NAME = "MARKER"


class _Marker:
    """A pickle that, when loaded, creates a file: proof that the pickle ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _env(tmp_path, config_dir="cfg"):
    env = dict(os.environ)
    for key in local_ray.AUTH_VARIABLES:
        env.pop(key, None)
    env.update(HOME=str(tmp_path / "home"), TWOBIRDS_CONFIG_DIR=str(tmp_path / config_dir))
    (tmp_path / "home").mkdir(exist_ok=True)
    return env


@pytest.fixture(scope="session")
def tune(run_script):
    return lambda *args, env, timeout=300: run_script("tune", *args, env=env, timeout=timeout)


def assert_one_error_line(done, message):
    """A search that fails once Ray has started: exit 2, one `error:` line among Ray's own output."""
    assert done.returncode == 2, (done.returncode, done.stdout[-3000:], done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, done.stderr[-3000:]
    assert message in errors[0], done.stderr[-3000:]
    return errors[0]


def ray_processes(folder: str) -> list[int]:
    from search.driver.reaper import processes_of

    return processes_of(folder)


def ray_folders_of(driver_pid: int) -> set[str]:
    """The local Ray temp folders of this driver: those its reapers watch (`reaper.py DRIVER_PID FOLDER`).

    Named by the driver's pid, not by listing /tmp/twobirds-ray-*: other searches on the machine (another
    test, another checkout, a reaper still deleting an earlier run's folder) have folders there too.
    """
    folders = set()
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if len(args) >= 4 and args[1].endswith("reaper.py") and args[2] == str(driver_pid):
            folders.add(args[3])
    return folders


def run_watching_ray(command: list, cwd: Path, env: dict, logs: Path, timeout: float = 300):
    """Run a search driver to its end, noting the local Ray folders it made (and their token's mode) while
    it runs: -> (CompletedProcess, {folder: token mode or None})."""
    out, err = logs.with_suffix(".out"), logs.with_suffix(".err")
    with open(out, "w") as stdout, open(err, "w") as stderr:
        driver = subprocess.Popen(command, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
        folders: dict = {}
        deadline = time.monotonic() + timeout
        try:
            while driver.poll() is None and time.monotonic() < deadline:
                for folder in ray_folders_of(driver.pid) - set(folders):
                    token = Path(folder) / local_ray.TOKEN_FILE
                    try:
                        folders[folder] = token.stat().st_mode & 0o777
                    except OSError:
                        folders[folder] = None
                time.sleep(0.1)
        finally:
            if driver.poll() is None:
                driver.kill()
            driver.wait()
    done = subprocess.CompletedProcess(command, driver.returncode, out.read_text(), err.read_text())
    return done, folders


def test_private_token_is_0600(tmp_path):
    path = local_ray.private_token(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(path.read_text()) == 64


def test_trust_key_is_0600_and_a_manifest_fails_under_another_key(tmp_path, monkeypatch):
    from search.driver.storage import Storage

    monkeypatch.setenv(trust.CONFIG_ENV, str(tmp_path / "cfg"))
    storage = Storage(tmp_path / "runs")
    storage.write("exp", "searcher-state-x.pkl", b"state")
    trust.sign_folder(storage, "exp")
    assert trust.key_path().stat().st_mode & 0o777 == 0o600
    trust.verify(storage, "exp")  # own, unchanged: passes
    storage.write("exp", "searcher-state-x.pkl", b"other")
    with pytest.raises(trust.UntrustedExperiment, match=r"searcher-state-x\.pkl is not the file"):
        trust.verify(storage, "exp")
    storage.write("exp", "searcher-state-x.pkl", b"state")
    storage.write("exp", "extra.pkl", b"added")
    with pytest.raises(trust.UntrustedExperiment, match=r"extra\.pkl is not the file"):
        trust.verify(storage, "exp")
    monkeypatch.setenv(trust.CONFIG_ENV, str(tmp_path / "other"))
    trust.load_key(create=True)
    with pytest.raises(trust.UntrustedExperiment, match="does not match this machine's key"):
        trust.verify(storage, "exp")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, smoke, repo):
    """A small finished search, run with its own HOME: (tmp folder, experiment folder, env, its Ray folders)."""
    tmp_path = tmp_path_factory.mktemp("search")
    env = _env(tmp_path)
    command = [sys.executable, "scripts/tune.py", "--config", str(smoke), "--name", "smoke"]
    command += ["--storage", str(tmp_path / "runs"), "--num-samples", "2"]
    done, ray_folders = run_watching_ray(command, repo, env, tmp_path / "search")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tmp_path, tmp_path / "runs" / "smoke", env, ray_folders


@pytest.mark.slow
def test_local_search_leaves_home_and_tmp_as_they_were(finished):
    tmp_path, folder, _, ray_folders = finished
    assert not (tmp_path / "home" / ".ray").exists()  # no ~/.ray/auth_token
    assert (folder / trust.MANIFEST).is_file()
    # one local Ray, in a private /tmp/twobirds-ray-* folder holding its token (0600)
    assert len(ray_folders) == 1, ray_folders
    ((ray_folder, token_mode),) = ray_folders.items()
    assert Path(ray_folder).parent == Path("/tmp")
    assert Path(ray_folder).name.startswith("twobirds-ray-"), ray_folder
    assert token_mode == 0o600, (ray_folder, token_mode)
    deadline = time.monotonic() + 15
    while Path(ray_folder).exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not Path(ray_folder).exists(), f"the run's Ray temp folder (and token) outlived the search: {ray_folder}"


@pytest.mark.slow
def test_a_replaced_searcher_pickle_never_runs_on_resume(finished, tmp_path, tune, one_line_error, monkeypatch):
    _, folder, env, _ = finished
    copy = tmp_path / "runs" / "smoke"
    shutil.copytree(folder, copy)
    marker = tmp_path / MARKER_NAME
    (state,) = copy.glob("searcher-state-*.pkl")
    state.write_bytes(pickle.dumps(_Marker(marker)))
    # the refusals come before Ray starts: in-process, under the search's HOME and key
    for key in local_ray.AUTH_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", env["HOME"])
    monkeypatch.setenv(trust.CONFIG_ENV, env[trust.CONFIG_ENV])
    resume = ("--name", "smoke", "--storage", tmp_path / "runs", "--resume")
    line = one_line_error("tune", *resume, message="is not the file this project's search wrote")
    assert state.name in line
    assert "--trust" in line
    assert line.ran.seconds < 30
    assert not marker.exists()
    # a folder signed under another user's key: refused as well
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "trust.key").write_text(os.urandom(32).hex())
    monkeypatch.setenv(trust.CONFIG_ENV, str(tmp_path / "x"))
    one_line_error("tune", *resume, message="does not match this machine's key")
    assert not marker.exists()
    # --trust is the explicit way to run it: the pickle runs, Tune's restore fails, in one line, no hang
    done = tune("--name", "smoke", "--storage", tmp_path / "runs", "--resume", "--trust", env=env, timeout=240)
    assert_one_error_line(done, "could not restore")
    assert marker.exists()


@pytest.mark.slow
def test_a_state_file_replaced_after_the_check_is_refused_where_tune_reads_it(
    finished, tmp_path, run_main, monkeypatch
):
    """preflight checks the folder before Ray starts; a file replaced after that is refused as Tune reads it."""
    from search.driver import preflight

    _, folder, env, _ = finished
    copy = tmp_path / "runs" / "smoke"
    shutil.copytree(folder, copy)
    marker = tmp_path / MARKER_NAME
    (state,) = copy.glob("searcher-state-*.pkl")
    checked = preflight.prepare

    def check_then_replace(*args, **kwargs):
        plan = checked(*args, **kwargs)
        state.write_bytes(pickle.dumps(_Marker(marker)))
        return plan

    monkeypatch.setattr(preflight, "prepare", check_then_replace)
    for key in local_ray.AUTH_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", env["HOME"])
    monkeypatch.setenv(trust.CONFIG_ENV, env[trust.CONFIG_ENV])
    ran = run_main("tune", "--name", "smoke", "--storage", tmp_path / "runs", "--resume")
    assert ran.returncode == 2, (ran.stdout[-2000:], ran.stderr[-2000:])
    assert "Traceback" not in ran.stderr, ran.stderr[-3000:]
    errors = [line for line in ran.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, ran.stderr[-3000:]
    assert f"{state.name} is not the file this project's search wrote" in errors[0]
    assert not marker.exists()


@pytest.mark.slow
def test_a_state_file_replaced_during_a_search_is_not_signed_at_its_end(tmp_path, smoke, run_main, monkeypatch):
    """The end of a search signs what its own process wrote, not what the storage holds by then."""
    from search.driver import run

    marker = tmp_path / MARKER_NAME
    storage = tmp_path / "runs"
    sign = run.sign_final_state

    def replace_then_sign(plan):
        (state,) = (storage / "smoke").glob("searcher-state-*.pkl")
        state.write_bytes(pickle.dumps(_Marker(marker)))
        sign(plan)

    monkeypatch.setattr(run, "sign_final_state", replace_then_sign)
    for key in local_ray.AUTH_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv(trust.CONFIG_ENV, str(tmp_path / "cfg"))
    ran = run_main("tune", "--config", smoke, "--name", "smoke", "--storage", storage, "--num-samples", "1")
    assert ran.returncode == 2, (ran.stdout[-2000:], ran.stderr[-2000:])
    errors = [line for line in ran.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, ran.stderr[-3000:]
    assert "is not the file this project's search wrote" in errors[0]
    assert not marker.exists()


@pytest.mark.slow
def test_sigkilled_driver_leaves_no_ray_process_and_the_signed_state_resumes(tmp_path, smoke, repo):
    env = _env(tmp_path)
    command = [sys.executable, "scripts/tune.py", "--config", str(smoke), "--name", "k", "--storage", str(tmp_path)]
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115 (the driver writes it until killed)
    driver = subprocess.Popen(command, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (
            list((tmp_path / "k").glob("experiment_state-*.json"))
            and list((tmp_path / "k").glob("t*_*/checkpoint_*/trainer.pt"))
        ):
            assert driver.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(2)  # let Tune save the state that knows the checkpoint
        folders = ray_folders_of(driver.pid)
        assert len(folders) == 1, f"driver {driver.pid}: local Ray folders {folders}"  # the one Ray it started
        (folder,) = folders
        assert ray_processes(folder), "no process of the local Ray found"
    finally:
        driver.send_signal(signal.SIGKILL)  # the driver alone, not its process group
        driver.wait()
    started = time.monotonic()
    while (ray_processes(folder) or Path(folder).exists()) and time.monotonic() - started < 30:
        time.sleep(0.5)
    assert not ray_processes(folder), f"Ray processes outlived their driver: {ray_processes(folder)}"
    assert not Path(folder).exists()
    print(f"local Ray gone {time.monotonic() - started:.1f} s after the driver's SIGKILL")
    # a corrupted checkpoint in every trial folder: those trials start again, the search finishes
    damaged = list((tmp_path / "k").glob("t*_*/checkpoint_*/trainer.pt"))
    for path in damaged:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    resumed = subprocess.run([*command, "--resume"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    table = read_results(tmp_path / "k" / "results.csv")
    assert len(table) == 6, table[["trial_id", "status", "error"]]
    assert (table["status"] == "TERMINATED").all(), table[["trial_id", "status", "error"]]
    restarted = (resumed.stdout + resumed.stderr).count("damaged checkpoint")
    print(f"{len(damaged)} damaged checkpoints; trials restarted: {restarted}")


@pytest.mark.slow
def test_a_full_disk_stops_the_search_in_one_line_and_resume_finishes_once_there_is_room(
    tmp_path, small_disk, tune, smoke
):
    env = _env(tmp_path)
    command = ["--config", smoke, "--name", "full", "--storage", small_disk]
    done = tune(*command, env=env)
    line = assert_one_error_line(done, "no space left on the device")
    assert "--resume" in line
    assert done.seconds < 120
    finished = set()
    state = list((small_disk / "full").glob("experiment_state-*.json"))
    if state:  # the trials Tune had recorded as finished: none of them may be lost or rerun
        import json

        trials = (json.loads(t[0]) for t in json.loads(state[0].read_text())["trial_data"])
        finished = {t["trial_id"] for t in trials if t["status"] == "TERMINATED"}
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    resumed = tune("--name", "full", "--storage", small_disk, "--resume", env=env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    table = read_results(small_disk / "full" / "results.csv")
    assert len(table) == 6
    assert (table["status"] == "TERMINATED").all()
    assert finished <= set(table["trial_id"])
    print(f"full disk: stopped in {done.seconds:.1f} s, {len(finished)} finished kept, resumed {resumed.seconds:.0f} s")


@pytest.mark.slow
def test_local_rays_one_after_another_in_one_process_each_use_their_own_token(monkeypatch):
    """Ray caches its token per process and sets RAY_AUTH_MODE for good: a second local Ray (a benchmark after a
    search, as the tests run them) must still start, and the environment is as it was after each."""
    import ray

    for key in local_ray.AUTH_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    if ray.is_initialized():
        ray.shutdown()
    for _ in range(2):
        started = local_ray.start()
        assert ray.get(ray.put(1)) == 1
        started.stop()
        assert not [key for key in local_ray.AUTH_VARIABLES if key in os.environ]
