"""search/driver/reaper.py picks the processes of its own Ray run by what they inherited from the driver,
never by what their command line says."""

import os
import subprocess
import sys
import time

from search.driver.reaper import RUN_VARIABLE, alive, processes_of


def test_the_reaper_picks_its_runs_processes_and_no_others(tmp_path):
    folder = str(tmp_path / "twobirds-ray-test")
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    ours = subprocess.Popen(sleeper, env={**os.environ, RUN_VARIABLE: folder})
    bystander = subprocess.Popen([*sleeper, folder])  # names the folder on its command line, e.g. `ls FOLDER`
    other_run = subprocess.Popen(sleeper, env={**os.environ, RUN_VARIABLE: folder + "-other"})
    try:
        deadline = time.monotonic() + 10
        while ours.pid not in processes_of(folder) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_of(folder) == [ours.pid]
    finally:
        for process in (ours, bystander, other_run):
            process.kill()
            process.wait()
    assert not alive(ours.pid, None)  # reaped: gone
