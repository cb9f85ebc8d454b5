"""Stop a local Ray once the search driver that started it is gone (run by search/driver/local_ray.py).

    python search/driver/reaper.py DRIVER_PID RAY_TEMP_FOLDER

Waits for DRIVER_PID to exit (by any means, SIGKILL included), then sends SIGTERM and, after a
grace period, SIGKILL to every process of this user whose command line names RAY_TEMP_FOLDER or
whose environment has TWOBIRDS_RAY_RUN=RAY_TEMP_FOLDER (Ray's GCS, raylet, agents and workers
inherit it from the driver), and deletes the folder (with the run's token).
Standard library only: it must not import Ray or the project.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path

RUN_VARIABLE = "TWOBIRDS_RAY_RUN"  # set by local_ray.py; every process of that Ray inherits it
POLL_S = 0.5
GRACE_S = 5.0


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def alive(pid: int, started: str | None) -> bool:
    if started is not None:  # /proc: the same pid with another start time is another process
        return _start_time(pid) == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def processes_of(folder: str) -> list[int]:
    """Pids of this user's processes whose command line mentions `folder` (Linux /proc)."""
    pids, me, uid = [], os.getpid(), os.getuid()
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if folder not in cmdline:  # agents and workers rename themselves (ray::...): ask their environment
                environ = (entry / "environ").read_bytes().split(b"\0")
                if f"{RUN_VARIABLE}={folder}".encode() not in environ:
                    continue
        except OSError:
            continue
        pids.append(int(entry.name))
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
