"""Faults under load: a local search on the laptop space while one running trial process is SIGKILLed every
--kill-every seconds and the driver once (then `--resume`d); afterwards, what was kept.

    python bench/chaos.py                      # 10 minutes on the laptop space (docs/reliability.md)
    python bench/chaos.py --minutes 2 --quick  # the smoke space, a few kills (the tests run this)

Checks, each a RESULT line: every trial Tune reported ended (the console's per-trial lines) is in results.csv
and in the Optuna journal exactly once; no trial is left RUNNING in the journal; results.csv and the journal
agree on the value of every trial that finished or ASHA stopped; TensorBoard has one run (event files) per
trial that reported an epoch; trials lost (errored although only their process was killed, or reported and
then missing) is 0.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import psutil

from search.driver.reaper import processes_of
from search.trials import read_results

ROOT = common.ROOT
ENDED = re.compile(r"^\[\d+/\d+\] (t\S+): ")


def ray_folder(driver: int) -> str | None:
    """The local Ray folder of a search driver: the one its reaper (search/driver/reaper.py) watches."""
    for process in psutil.process_iter(["cmdline"]):
        line = process.info["cmdline"] or []
        if len(line) == 4 and line[1].endswith("reaper.py") and line[2] == str(driver):
            return line[3]
    return None


def trial_processes(folder: str | None) -> list[psutil.Process]:
    """Running trial workers of that Ray (Ray renames them ray::ImplicitFunc...; idle ones are ray::IDLE)."""
    return [psutil.Process(pid) for pid in processes_of(folder or "-") if _is_trial(pid)]


def _is_trial(pid: int) -> bool:
    try:
        return (psutil.Process(pid).cmdline() or [""])[0].startswith("ray::ImplicitFunc")
    except psutil.Error:
        return False


def run_search(args, storage: Path, resume: bool, stop_at: float, kill_driver_at: float | None, log) -> dict:
    """One driver process; kills its trials every args.kill_every s, and itself once at kill_driver_at."""
    command = [sys.executable, "scripts/tune.py", "--name", "chaos", "--storage", str(storage)]
    command += ["--resume"] if resume else ["--config", str(args.config), "--time-budget", str(args.minutes * 60)]
    driver = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    kills, killed_driver, next_kill, folder = 0, False, time.monotonic() + args.kill_every, None
    while driver.poll() is None:
        now = time.monotonic()
        folder = folder or ray_folder(driver.pid)
        if kill_driver_at is not None and now >= kill_driver_at:
            driver.send_signal(signal.SIGKILL)
            driver.wait()
            killed_driver = True
            break
        if now >= next_kill:
            next_kill = now + args.kill_every
            victims = trial_processes(folder)
            if victims:
                victims[0].send_signal(signal.SIGKILL)
                kills += 1
        if now > stop_at + 600:  # the search's own budget ran out long ago: something hangs
            driver.send_signal(signal.SIGKILL)
            raise SystemExit("error: the search did not end 10 minutes after its time budget")
        time.sleep(0.5)
    return {"kills": kills, "killed_driver": killed_driver, "returncode": driver.wait(), "folder": folder}


def wait_for_reaper(folder: str | None, timeout: float = 60) -> None:
    """After a driver's SIGKILL its reaper stops that Ray; a resume waits until no process of it is left."""
    deadline = time.monotonic() + timeout
    while folder and processes_of(folder) and time.monotonic() < deadline:
        time.sleep(1)


def checks(experiment: Path, console: str) -> list[tuple[str, float, str, bool]]:
    """(name, value, goal, met) for what a crash must not lose."""
    import optuna

    from search.driver.study import load_study

    table = read_results(experiment / "results.csv")
    study = load_study(experiment)
    journal = study.get_trials(deepcopy=False)
    reported = {m.group(1) for line in console.splitlines() if (m := ENDED.match(line))}
    runs = table["run"].astype(str).tolist()
    ids = [t.user_attrs.get("ray_trial_id") for t in journal]
    missing = [r for r in reported if runs.count(r) != 1 or ids.count(r.rsplit("_", 1)[-1]) != 1]
    running = [t.number for t in journal if t.state == optuna.trial.TrialState.RUNNING]
    # the journal's value of a trial: a COMPLETE one's value; a PRUNED one's at the epoch results.csv ends at (a
    # trial restarted from an older checkpoint reported later epochs before; Optuna keeps every step)
    journal_by_id = {t.user_attrs.get("ray_trial_id"): t for t in journal}
    scored = table[table["stop_reason"].isin(["finished", "asha"])]
    disagree = []
    for row in scored.itertuples():
        trial = journal_by_id.get(row.trial_id)
        value = None if trial is None else trial.value if trial.state.name == "COMPLETE" else None
        if trial is not None and trial.state.name == "PRUNED":
            value = trial.intermediate_values.get(int(row.epochs))
        if value is None or not math.isclose(value, row.score, rel_tol=1e-6, abs_tol=1e-9):
            disagree.append(row.run)
    reported_once = table.loc[table["epochs"] > 0, "run"].astype(str)  # a trial killed before epoch 1 shows nothing
    no_events = [r for r in reported_once if not list((experiment / r).glob("events.out.tfevents*"))]
    errored = int((table["stop_reason"] == "error").sum())
    return [
        ("chaos_trials_reported_missing", len(missing), "0", not missing),
        ("chaos_journal_running", len(running), "0", not running),
        ("chaos_values_disagree", len(disagree), "0", not disagree),
        ("chaos_trials_without_tensorboard_run", len(no_events), "0", not no_events),
        ("chaos_trials_lost", len(missing) + errored, "0", not missing and not errored),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10, help="the search's time budget (default 10)")
    parser.add_argument("--kill-every", type=float, default=20, help="seconds between trial kills (default 20)")
    parser.add_argument("--quick", action="store_true", help="the smoke space (the tests)")
    parser.add_argument("--config", type=Path, help="a search file (default: laptop, or smoke with --quick)")
    parser.add_argument("--out", type=Path, help="storage folder (default: a new temporary one)")
    args = parser.parse_args(argv)
    args.config = args.config or ROOT / "search" / "configs" / ("smoke.yaml" if args.quick else "laptop.yaml")
    storage = (args.out or Path(tempfile.mkdtemp(prefix="chaos-"))).resolve()
    log_path = storage / "console.log"
    storage.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    stop_at = started + args.minutes * 60
    with open(log_path, "w") as log:
        first = run_search(args, storage, False, stop_at, started + args.minutes * 60 / 2, log)
        runs, kills = [first], first["kills"]
        while runs[-1]["killed_driver"] or runs[-1]["returncode"] == 130:
            wait_for_reaper(runs[-1]["folder"])
            runs.append(run_search(args, storage, True, stop_at, None, log))
            kills += runs[-1]["kills"]
            if len(runs) > 3:
                break
    console = log_path.read_text()
    print(
        common.machine(f"{args.config.name}, {args.minutes:g} min budget, a trial killed every {args.kill_every:g} s")
    )
    common.table(
        ["driver run", "trial kills", "driver killed", "exit code"],
        [[str(i + 1), str(r["kills"]), str(r["killed_driver"]), str(r["returncode"])] for i, r in enumerate(runs)],
    )
    results = checks(storage / "chaos", console)
    table = read_results(storage / "chaos" / "results.csv")
    ended = table["stop_reason"].value_counts().to_dict()
    failures = sum(f.read_text().count("Failure # ") for f in (storage / "chaos").glob("*/error.txt"))
    print(f"trials: {len(table)}; ended: {ended}; wall {time.monotonic() - started:.0f} s")
    print(f"trial failures {failures} (each retried from its last checkpoint unless its trial ended in error)")
    print(f"trial kills {kills}, driver kills {sum(r['killed_driver'] for r in runs)}; folder {storage}")
    for name, value, goal, met in results:
        common.result(name, float(value), goal, met)
    return 0 if all(met for *_, met in results) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
