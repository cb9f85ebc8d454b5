"""The local Ray a search starts on this machine: private temp folder and token, no process left behind.

- Ray's temp folder is a fresh `/tmp/twobirds-ray-*` (0700) of this run, not the shared `/tmp/ray`.
- Token authentication stays on, with a token generated into that folder (0600) through
  `RAY_AUTH_TOKEN_PATH`: Ray would otherwise write `~/.ray/auth_token` world-readable and every later
  `ray start` on the machine would pick it up. A user who configured Ray's authentication
  (`RAY_AUTH_MODE`, `RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH`) keeps it.
- A reaper (`search/reaper.py`, its own session) waits for the driver to end, however it ends
  (SIGKILL included), then stops every process of that Ray by its temp folder and deletes the folder.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
TOKEN_FILE = "auth_token"
REAPER = Path(__file__).with_name("reaper.py")

_saved_env: dict[str, str | None] | None = None


def _set_env(values: dict[str, str]) -> None:
    global _saved_env
    _saved_env = {k: os.environ.get(k) for k in values}
    os.environ.update(values)


def restore_env() -> None:
    """Undo start()'s environment changes (after ray.shutdown), for callers that go on in this process."""
    global _saved_env
    for key, value in (_saved_env or {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _saved_env = None


def private_token(folder: Path) -> Path:
    """A new random token in `folder`, readable by this user only."""
    path = folder / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))
    return path


def start(ray) -> str:
    """ray.init a local Ray on 127.0.0.1 without a dashboard, in a private temp folder; returns the folder."""
    folder = Path(tempfile.mkdtemp(prefix="twobirds-ray-", dir="/tmp" if Path("/tmp").is_dir() else None))
    env = {}
    if not any(os.environ.get(k) for k in AUTH_VARIABLES):
        # Ray turns token mode on itself for a new local Ray and, finding this token, generates none
        env = {"RAY_AUTH_TOKEN_PATH": str(private_token(folder))}
    env["TWOBIRDS_RAY_RUN"] = str(folder)  # inherited by every Ray process: how the reaper finds them
    _set_env(env)
    _start_reaper(folder)
    from .ray_compat import temp_dir_kwargs

    ray.init(address="local", include_dashboard=False, dashboard_host="127.0.0.1", **temp_dir_kwargs(str(folder)))
    return str(folder)


def _start_reaper(folder: Path) -> None:
    subprocess.Popen(
        [sys.executable, str(REAPER), str(os.getpid()), str(folder)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives a kill of the driver's process group
        close_fds=True,
    )
