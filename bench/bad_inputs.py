"""Bad input and faults: run each case as a user would, record exit code, message and time to fail.

    .venv/bin/python bench/bad_inputs.py            # the input cases (no Ray search; ~3 min on 2 cores)
    .venv/bin/python bench/bad_inputs.py --faults   # plus the faults around a real search (a few minutes more)

Prints the markdown table of docs/reliability.md ("Bad input and faults") and ends with
``RESULT bad_inputs <cases with one clear line>/<cases> goal all met|missed``. A case is clear when
it exits with its expected status, its stderr's error is one line and no traceback was printed.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch.utils.data import TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402
from cvae.data import make_dataset  # noqa: E402
from cvae.functions import FunctionPair  # noqa: E402

SMOKE = ROOT / "search" / "configs" / "smoke.yaml"
VARIANT = ["sin(30*x0 + 20*x1)", "cos(25*x0 + 35*x1)"]


class _Marker:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def run(args, env=None, timeout=300):
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
        )
        code, err = done.returncode, done.stderr
    except subprocess.TimeoutExpired as timeout_error:
        code, err = "timeout", (timeout_error.stderr or b"").decode(errors="replace")
    return code, err, time.perf_counter() - started


def verdict(code, err, expected) -> tuple[bool, str]:
    errors = [line for line in err.splitlines() if "error:" in line]
    message = errors[0] if errors else "-" if code == 0 else (err.strip().splitlines() or [""])[-1]
    clear = code == expected and "Traceback" not in err and (expected == 0 or len(errors) == 1)
    if "Traceback" in err:  # name what raised
        lines = err.split("Traceback", 1)[1].splitlines()
        last = next((line for line in lines if line and not line.startswith(" ") and ":" in line), "")
        message += f" [traceback: {last.strip()[:160]}]"
    return clear, message


def make_files(root: Path) -> dict:
    x, y = make_dataset(4, FunctionPair(), seed=3)
    vx, vy = make_dataset(4, FunctionPair(VARIANT), seed=3)
    files = {}

    def save(name, a, b):
        files[name] = root / f"{name}.pt"
        torch.save(TensorDataset(a, b), files[name])

    save("scoring", x.unsqueeze(1), y.unsqueeze(1))
    save("variant", vx.unsqueeze(1), vy.unsqueeze(1))
    for name, s in (("sub30", 30), ("sub60", 60), ("sub45", 45)):
        save(name, x.repeat_interleave(s, 0).unsqueeze(1), y.repeat_interleave(s, 0).unsqueeze(1))
    save("variant30", vx.repeat_interleave(30, 0).unsqueeze(1), vy.repeat_interleave(30, 0).unsqueeze(1))
    save("empty", torch.zeros(0, 1, 50, 2), torch.zeros(0, 1, 50, 2))
    save("nan", torch.full((4, 1, 50, 2), float("nan")), y.unsqueeze(1))
    save("shape", torch.zeros(4, 1, 50, 3), torch.zeros(4, 1, 50, 3))
    files["random"] = root / "random.pt"
    files["random"].write_bytes(b"\x13" + os.urandom(4095))
    files["evil"] = root / "evil.pt"
    torch.save(_Marker(root / "PWNED"), files["evil"])
    whole = root / "model_like.pt"
    torch.save({"config": {}, "model": {"w": torch.zeros(1000)}}, whole)
    files["truncated"] = root / "truncated.pt"
    files["truncated"].write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    files["afile"] = root / "afile"
    files["afile"].write_text("")
    for name, change in (
        ("bad_key", lambda r: r["search"].update(num_trials=3)),
        ("bad_function", lambda r: r.update(functions=["cos(49*x0 + 42*y)", "x1"])),
        ("overflow", lambda r: r.update(functions=["9**9**9**9*x0", "x1"])),
        ("nesting", lambda r: r.update(functions=["(" * 5000 + "x0" + ")" * 5000, "x1"])),
        ("val_random", lambda r: r["data"].update(val_file=str(files["random"]))),
        ("val_evil", lambda r: r["data"].update(val_file=str(files["evil"]))),
        ("train_missing", lambda r: r["data"].update(train_file=str(root / "missing.pt"))),
        ("bad_range", lambda r: r["space"]["lr"].update(low=1.0, high=0.1)),
    ):
        raw = yaml.safe_load(SMOKE.read_text())
        change(raw)
        files[f"cfg_{name}"] = root / f"{name}.yaml"
        files[f"cfg_{name}"].write_text(yaml.safe_dump(raw))
    return files


def input_cases(f: dict, root: Path) -> list[tuple[str, list, int]]:
    """(what, command, expected exit status)."""
    tune = ["scripts/tune.py", "--config", SMOKE, "--storage", root / "runs"]

    def tune_cfg(name):
        return ["scripts/tune.py", "--config", f[f"cfg_{name}"], "--name", name, "--storage", root / "runs"]

    gen = ["scripts/generate.py", "--scoring", f["scoring"], "--out", root / "r.pt", "--model", f["truncated"]]
    mixed = [*gen, "--proposals-from", "mixed"]
    final = ["scripts/finalize.py", "--experiment", root / "exp"]
    device = "cuda:99" if torch.cuda.is_available() else "cuda"
    return [
        ("search file: unknown key", tune_cfg("bad_key"), 2),
        ("search file: unknown name in a function", tune_cfg("bad_function"), 2),
        ("search file: space low > high", tune_cfg("bad_range"), 2),
        ("search file: missing train_file", tune_cfg("train_missing"), 2),
        ("search file: val_file of random bytes (item 5)", tune_cfg("val_random"), 2),
        ("search file: val_file with a malicious pickle", tune_cfg("val_evil"), 2),
        ("function `9**9**9**9*x0` (item 6)", tune_cfg("overflow"), 2),
        ("function with 5,000 nested parentheses (item 6)", tune_cfg("nesting"), 2),
        ("tune --name ../../escape (item 3)", [*tune, "--name", "../../escape"], 2),
        (
            "tune --storage a file (item 10)",
            ["scripts/tune.py", "--config", SMOKE, "--name", "x", "--storage", f["afile"]],
            2,
        ),
        ("tune --address 127.0.0.1:1 (item 1)", [*tune, "--name", "a1", "--address", "127.0.0.1:1"], 2),
        ("tune --address ray://127.0.0.1:1 (item 11)", [*tune, "--name", "a2", "--address", "ray://127.0.0.1:1"], 2),
        (
            "tune --resume of a missing experiment",
            [*tune[:1], "--name", "none", "--storage", root / "runs", "--resume"],
            2,
        ),
        ("tune --num-samples 0", [*tune, "--name", "n0", "--num-samples", "0"], 2),
        ("generate --mix 2 (item 2)", [*mixed, "--mix", "2"], 2),
        ("generate --mix -0.5 (item 2)", [*mixed, "--mix", "-0.5"], 2),
        ("generate --temperature 0 (item 2)", [*gen, "--temperature", "0"], 2),
        (f"generate --device {device} on this torch (item 9)", [*gen, "--device", device], 2),
        ("generate --out a folder (item 10)", [*gen[:-4], "--out", root, "--model", f["truncated"]], 2),
        ("generate --model truncated (item 10)", gen, 2),
        ("generate --model random bytes (item 7)", [*gen[:-1], f["random"]], 2),
        ("generate --model a malicious pickle", [*gen[:-1], f["evil"]], 2),
        ("generate --samples 0", [*gen, "--samples", "0"], 2),
        ("score: 60 samples per condition (item 2)", ["scripts/score.py", f["sub60"], "--scoring", f["scoring"]], 2),
        ("score: 45 samples per condition (item 2)", ["scripts/score.py", f["sub45"], "--scoring", f["scoring"]], 2),
        ("score: random bytes (item 7)", ["scripts/score.py", f["random"]], 2),
        ("score: 0-row submission (item 7)", ["scripts/score.py", f["empty"]], 2),
        ("score: NaN in x", ["scripts/score.py", f["nan"]], 2),
        ("score: lines of 3 columns", ["scripts/score.py", f["shape"]], 2),
        ("score: a malicious pickle", ["scripts/score.py", f["evil"]], 2),
        ("score: truncated file", ["scripts/score.py", f["truncated"]], 2),
        (
            "score: wrong scoring file",
            ["scripts/score.py", f["sub30"], "--scoring", f["variant"], "--functions", *VARIANT],
            2,
        ),
        (
            "score --functions not the file's (item 12)",
            ["scripts/score.py", f["sub30"], "--scoring", f["scoring"], "--functions", *VARIANT],
            2,
        ),
        (
            "score: official default on a variant's file (item 12)",
            ["scripts/score.py", f["variant30"], "--scoring", f["variant"]],
            2,
        ),
        ("score --functions with an unknown name", ["scripts/score.py", f["sub30"], "--functions", "cos(z)", "x1"], 2),
        ("finalize --val-file random bytes (item 8)", [*final, "--val-file", f["random"]], 2),
        ("finalize --val-file missing (item 8)", [*final, "--val-file", root / "missing.pt"], 2),
        (f"finalize --device {device} on this torch (item 9)", [*final, "--device", device], 2),
        ("finalize --out a file (item 10)", [*final, "--out", f["afile"]], 2),
        ("finalize --experiment missing", ["scripts/finalize.py", "--experiment", root / "nothing"], 2),
    ]


def fault_cases(root: Path, rows: list) -> None:
    """Faults around a real search: tampered state, SIGKILLed driver, damaged checkpoints, a full disk."""
    env = dict(os.environ, HOME=str(root / "home"), TWOBIRDS_CONFIG_DIR=str(root / "cfg"))
    (root / "home").mkdir(exist_ok=True)
    storage = root / "faults"
    base = ["scripts/tune.py", "--config", SMOKE, "--storage", storage]

    def add(what, code, err, seconds, expected, note=""):
        clear, message = verdict(code, err, expected)
        rows.append((what, code, (message + (f" ({note})" if note else "")).strip(), seconds, clear))

    code, err, seconds = run([*base, "--name", "done", "--num-samples", "2"], env)
    add("a small search (reference)", code, err, seconds, 0, f"~/.ray created: {(root / 'home' / '.ray').exists()}")
    marker = root / "MARKER"
    (state,) = (storage / "done").glob("searcher-state-*.pkl")
    state.write_bytes(pickle.dumps(_Marker(marker)))
    code, err, seconds = run(["scripts/tune.py", "--name", "done", "--storage", storage, "--resume"], env)
    add(
        "--resume, searcher-state replaced by a marker pickle (item 4)",
        code,
        err,
        seconds,
        2,
        f"marker ran: {marker.exists()}",
    )
    code, err, seconds = run(["scripts/tune.py", "--name", "done", "--storage", storage, "--resume", "--trust"], env)
    add(
        "the same with --trust (the pickle runs; restore fails)",
        code,
        err,
        seconds,
        2,
        f"marker ran: {marker.exists()}",
    )

    # SIGKILL the driver once a trial checkpointed; damage every checkpoint; resume
    log = open(root / "kill.log", "w")  # noqa: SIM115 (the driver writes it until killed)
    started = time.perf_counter()
    driver = subprocess.Popen(
        [sys.executable, *map(str, base), "--name", "k"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    while driver.poll() is None and time.perf_counter() - started < 300:
        if list((storage / "k").glob("trial_*/checkpoint_*/trainer.pt")) and list(
            (storage / "k").glob("experiment_state-*")
        ):
            time.sleep(3)
            break
        time.sleep(0.5)
    folders = set(Path("/tmp").glob("twobirds-ray-*"))
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    killed = time.perf_counter()
    from search.driver.reaper import processes_of

    while any(processes_of(str(f)) or f.exists() for f in folders) and time.perf_counter() - killed < 60:
        time.sleep(0.25)
    left = sum(len(processes_of(str(f))) for f in folders)
    rows.append(
        (
            "driver SIGKILLed mid-search (item 13)",
            "-9",
            f"{left} Ray processes left after {time.perf_counter() - killed:.1f} s",
            time.perf_counter() - killed,
            left == 0,
        )
    )
    damaged = 0
    for path in (storage / "k").glob("trial_*/checkpoint_*/trainer.pt"):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        damaged += 1
    code, err, seconds = run(["scripts/tune.py", "--name", "k", "--storage", storage, "--resume"], env)
    table = storage / "k" / "results.csv"
    finished = table.read_text().count("TERMINATED") if table.exists() else 0
    add(
        f"--resume after the SIGKILL, {damaged} checkpoints truncated",
        code,
        err,
        seconds,
        0,
        f"{finished} trials TERMINATED; restarts: {err.count('damaged checkpoint')}",
    )

    # a full disk: storage on a 1 MiB tmpfs (needs root to mount), then room again and --resume
    small = root / "tmpfs"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True).returncode:
        rows.append(("storage fills up during a checkpoint", "-", "not run: cannot mount a tmpfs here", 0, False))
        return
    try:
        code, err, seconds = run(["scripts/tune.py", "--config", SMOKE, "--storage", small, "--name", "full"], env)
        add("storage fills up during a checkpoint (1 MiB tmpfs)", code, err, seconds, 2)
        subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
        code, err, seconds = run(["scripts/tune.py", "--storage", small, "--name", "full", "--resume"], env)
        table = small / "full" / "results.csv"
        finished = table.read_text().count("TERMINATED") if table.exists() else 0
        add("--resume once there is room (64 MiB)", code, err, seconds, 0, f"{finished} trials TERMINATED")
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", action="store_true", help="also the faults around a real search")
    parser.add_argument("--faults-only", action="store_true", help="only the faults around a real search")
    args = parser.parse_args(argv)
    print(machine())
    root = Path(tempfile.mkdtemp(prefix="bad-inputs-"))
    try:
        from tests.test_finalize import make_experiment

        make_experiment(root / "exp", train_size=200_000)
        files = make_files(root)
        rows = []
        for what, command, expected in [] if args.faults_only else input_cases(files, root):
            code, err, seconds = run(command)
            clear, message = verdict(code, err, expected)
            rows.append((what, code, message, seconds, clear))
            if (root / "PWNED").exists():
                rows.append(("  ^ the malicious pickle RAN", "-", "", 0, False))
        if args.faults or args.faults_only:
            fault_cases(root, rows)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("\n| # | input or fault | exit | message (first error line) | time to fail | one clear line |")
    print("|---|---|---|---|---|---|")
    for i, (what, code, message, seconds, clear) in enumerate(rows, 1):
        message = message.replace("|", "\\|").replace(str(root), "TMP").replace("<", "&lt;")
        print(f"| {i} | {what} | {code} | {message} | {seconds:.1f} s | {'yes' if clear else '**no**'} |")
    good = sum(r[4] for r in rows)
    print(f"\nRESULT bad_inputs {good}/{len(rows)} goal all {'met' if good == len(rows) else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
