"""Stop a local Ray once the search driver that started it is gone (run by search/driver/local_ray.py).

    python search/driver/reaper.py DRIVER_PID RAY_TEMP_FOLDER

Waits for DRIVER_PID to exit (by any means, SIGKILL included), then sends SIGTERM and, after a
grace period, SIGKILL to every process of this user whose environment has TWOBIRDS_RAY_RUN=RAY_TEMP_FOLDER
(Ray's GCS, raylet, agents and workers inherit it from the driver), and deletes the folder (with the
run's token). The standard library and psutil only: it must not import Ray or the project.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import psutil

RUN_VARIABLE = "TWOBIRDS_RAY_RUN"  # set by local_ray.py; every process of that Ray inherits it
POLL_S = 0.5
GRACE_S = 5.0


def _start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def alive(pid: int, started: float | None) -> bool:
    """Whether `pid` still runs the process that started at `started` (a reused pid is another process)."""
    try:
        process = psutil.Process(pid)
        same = started is None or process.create_time() == started
        return same and process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # gone (a zombie too)
        return False
    except psutil.Error:  # cannot tell: never stop a Ray whose driver may still run
        return True


def processes_of(folder: str) -> list[int]:
    """Pids of this user's processes that inherited RUN_VARIABLE=folder: the processes of this run's Ray
    (GCS, raylet, agents, workers, all started from the driver), and no other process, whatever its
    command line says. Through psutil, so on Linux and macOS alike."""
    pids, me, uid = [], os.getpid(), os.getuid()
    for process in psutil.process_iter(["uids"]):
        try:
            if process.pid == me or process.info["uids"] is None or process.info["uids"].real != uid:
                continue
            if process.environ().get(RUN_VARIABLE) == folder:
                pids.append(process.pid)
        except (psutil.Error, OSError):
            continue
    return pids


def stop(folder: str) -> None:
    for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 1.0)):
        pids = processes_of(folder)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and processes_of(folder):
            time.sleep(0.2)
    shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    pid, folder = int(argv[0]), argv[1]
    started = _start_time(pid)
    while alive(pid, started):
        time.sleep(POLL_S)
    if not Path(folder).name.startswith("twobirds-ray-"):
        return 2  # only ever a folder local_ray.py made
    stop(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
