"""The local Ray a search starts on this machine: private temp folder and token, no process left behind.

- Ray's temp folder is a fresh `/tmp/twobirds-ray-*` (0700) of this run, not the shared `/tmp/ray`.
- Token authentication stays on, with a token generated into that folder (0600) through
  `RAY_AUTH_TOKEN_PATH`: Ray would otherwise write `~/.ray/auth_token` world-readable and every later
  `ray start` on the machine would pick it up. A user who configured Ray's authentication
  (`RAY_AUTH_MODE`, `RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH`) keeps it.
- A reaper (`search/driver/reaper.py`, its own session) waits for the driver to end, however it ends
  (SIGKILL included), then stops every process of that Ray by its temp folder and deletes the folder.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import ray

from .compat import forget_auth_token, temp_dir_kwargs
from .files import write_private
from .reaper import RUN_VARIABLE

AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
TOKEN_FILE = "auth_token"
REAPER = Path(__file__).with_name("reaper.py")
CHECKOUT = str(Path(__file__).resolve().parents[2])  # the folder that holds cvae/ and search/


def private_token(folder: Path) -> Path:
    """A new random token in `folder`, readable by this user only."""
    path = folder / TOKEN_FILE
    if not write_private(path, secrets.token_hex(32)):
        raise FileExistsError(path)
    return path


@dataclass
class LocalRay:
    """A started local Ray: its temp folder, and the environment this process had before it."""

    folder: str
    saved_env: dict = field(default_factory=dict)

    def stop(self) -> None:
        """ray.shutdown, then this process's environment (Ray's authentication settings included) as before `start`."""
        ray.shutdown()
        for key, value in self.saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        forget_auth_token()  # a later Ray of this process reads its own token


def _environment(folder: Path) -> dict[str, str]:
    """What the driver and, through it, every process of this Ray get: how the reaper finds them, the private
    token, and this checkout on PYTHONPATH (workers import search/ and cvae/ from it when not pip-installed)."""
    env = {RUN_VARIABLE: str(folder)}
    if not any(os.environ.get(k) for k in AUTH_VARIABLES):
        # Ray turns token mode on itself for a new local Ray and, finding this token, generates none
        env["RAY_AUTH_TOKEN_PATH"] = str(private_token(folder))
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if CHECKOUT not in paths:
        env["PYTHONPATH"] = os.pathsep.join([CHECKOUT, *paths])
    return env


def start(**init_options) -> LocalRay:
    """ray.init a local Ray on 127.0.0.1 without a dashboard, in a private temp folder (`init_options`: more of
    ray.init's arguments, e.g. a benchmark's num_cpus)."""
    folder = Path(tempfile.mkdtemp(prefix="twobirds-ray-", dir="/tmp" if Path("/tmp").is_dir() else None))
    env = _environment(folder)
    started = LocalRay(str(folder), {k: os.environ.get(k) for k in {*env, *AUTH_VARIABLES}})  # ray.init sets the mode
    os.environ.update(env)
    forget_auth_token()  # an earlier Ray of this process (a test's, a benchmark's) left its token cached
    _start_reaper(folder)
    options = {"include_dashboard": False, "dashboard_host": "127.0.0.1", **init_options}
    ray.init(address="local", **options, **temp_dir_kwargs(str(folder)))
    return started


def _start_reaper(folder: Path) -> None:
    subprocess.Popen(
        [sys.executable, str(REAPER), str(os.getpid()), str(folder)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives a kill of the driver's process group
        close_fds=True,
    )
