"""Bad input and faults (issue 14): each ends in one line, exit 2, no traceback, before heavy work.

Every case runs the script as a user does (a subprocess from the repo root) and measures the time
to fail. Items 1-12 of the issue need no running Ray: the checks all come before Ray starts.
"""

import os
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import TensorDataset

from cvae.data import make_dataset
from cvae.functions import FunctionPair

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "search" / "configs" / "smoke.yaml"
VARIANT = ["sin(30*x0 + 20*x1)", "cos(25*x0 + 35*x1)"]
RAY_STARTED = ("Started a local Ray instance", "Connecting to existing Ray cluster", "ray.init")


@pytest.fixture(scope="session")
def run(run_script):
    return run_script


def assert_one_line(done, message, prefix="error: "):
    """Exit 2, one stderr line naming the problem, no traceback, and no Ray started."""
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert prefix in lines[0], lines[0]
    assert message in lines[0], lines[0]
    assert not any(marker in done.stdout + done.stderr for marker in RAY_STARTED), done.stderr
    return lines[0]


@pytest.fixture(scope="session")
def tune(run_script):
    return lambda *args, **kwargs: run_script("tune", *args, **kwargs)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Scoring files and submissions, good and bad, written once."""
    root = tmp_path_factory.mktemp("files")
    x, y = make_dataset(4, FunctionPair(), seed=3)
    paths = {}
    paths["scoring"] = root / "scoring.pt"
    torch.save(TensorDataset(x.unsqueeze(1), y.unsqueeze(1)), paths["scoring"])
    vx, vy = make_dataset(4, FunctionPair(VARIANT), seed=3)
    paths["variant"] = root / "variant.pt"
    torch.save(TensorDataset(vx.unsqueeze(1), vy.unsqueeze(1)), paths["variant"])
    paths["no_true_x"] = root / "no_true_x.pt"
    torch.save(TensorDataset(torch.zeros_like(vx).unsqueeze(1), vy.unsqueeze(1)), paths["no_true_x"])

    def submission(name, xs, ys, s):
        rows_x = xs.repeat_interleave(s, 0).unsqueeze(1)
        rows_y = ys.repeat_interleave(s, 0).unsqueeze(1)
        paths[name] = root / f"{name}.pt"
        torch.save(TensorDataset(rows_x, rows_y), paths[name])

    submission("sub30", x, y, 30)
    submission("sub60", x, y, 60)
    submission("variant30", vx, vy, 30)
    paths["random"] = root / "random.pt"
    paths["random"].write_bytes(os.urandom(4096).replace(b"PK", b"pk").lstrip(b"\x80") or b"x")
    paths["empty"] = root / "empty.pt"
    torch.save(TensorDataset(torch.zeros(0, 1, 50, 2), torch.zeros(0, 1, 50, 2)), paths["empty"])
    whole = root / "model_like.pt"
    torch.save({"config": {}, "model": {"w": torch.zeros(1000)}}, whole)
    paths["truncated"] = root / "truncated.pt"
    paths["truncated"].write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return paths


# --- item 2: generate's ranges, score's sample count ---------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [("--mix", "2", "--mix 2: must lie in [0, 1]"), ("--mix", "-0.5", "--mix -0.5"), ("--temperature", "0", "> 0")],
)
def test_generate_refuses_out_of_range_mix_and_temperature(files, tmp_path, flag, value, message, run):
    out = tmp_path / "result.pt"
    done = run(
        "generate",
        "--model",
        files["truncated"],
        "--proposals-from",
        "mixed",
        "--scoring",
        files["scoring"],
        "--out",
        out,
        flag,
        value,
    )
    assert_one_line(done, message)
    assert not out.exists()


def test_score_refuses_a_submission_without_the_expected_samples_per_condition(files, run):
    done = run("score", files["sub60"], "--scoring", files["scoring"])
    assert_one_line(done, "60 samples per condition, expected 30")
    assert run("score", files["sub60"], "--scoring", files["scoring"], "--samples", "60").returncode == 0
    assert run("score", files["sub30"], "--scoring", files["scoring"]).returncode == 0


# --- item 3: the experiment name is one folder name ---------------------------------------


@pytest.mark.parametrize("name", ["../../escape", "a/b", "/tmp/abs", "..", ".hidden", ""])
def test_tune_refuses_a_name_that_is_not_one_folder_and_writes_nothing(tmp_path, name, tune):
    storage = tmp_path / "a" / "b" / "storage"
    done = tune("--config", SMOKE, "--name", name, "--storage", storage)
    assert_one_line(done, "must be one folder name", prefix="twobirds-tune: error: ")
    assert list(tmp_path.rglob("*")) == []  # nothing inside --storage, nothing beside or above it


# --- item 5: data files of the search file are read before Ray starts -------------------------


@pytest.mark.parametrize(("kind", "message"), [("random", "not a torch file"), ("empty", "has no rows")])
def test_tune_checks_the_search_files_data_files_before_ray_starts(files, tmp_path, kind, message, tune):
    raw = yaml.safe_load(SMOKE.read_text())
    raw["data"]["val_file"] = str(files[kind])
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump(raw))
    done = tune("--config", config, "--name", "x", "--storage", tmp_path / "runs")
    line = assert_one_line(done, message, prefix="twobirds-tune: error: ")
    assert "data:" in line, (line, done.seconds)
    assert done.seconds < 30, (line, done.seconds)
    assert not (tmp_path / "runs" / "x").exists()


# --- item 6: function expressions are bounded --------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("9**9**9**9*x0", "overflows"),
        ("(" * 5000 + "x0" + ")" * 5000, "at most 500"),
        ("(" * 200 + "x0" + ")" * 200, "nests deeper than 50"),
        ("1e400*x0", "too large"),
        ("1/0*x0", "divides by zero"),
    ],
)
def test_function_expressions_that_overflow_or_nest_too_deep_end_in_one_line(
    files, tmp_path, expression, message, run, tune
):
    assert_one_line(run("score", files["sub30"], "--functions", expression, "x1"), message)
    raw = yaml.safe_load(SMOKE.read_text())
    raw["functions"] = [expression, "x1"]
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert_one_line(tune("--config", config, "--name", "x", "--storage", tmp_path), message, "twobirds-tune: error: ")


# --- item 7: not a torch file, an empty submission ---------------------------------------


def test_random_bytes_are_not_a_torch_file_and_an_empty_submission_is_refused(files, run):
    assert_one_line(run("score", files["random"]), "not a torch file")
    assert_one_line(run("score", files["empty"]), "has no rows")
    assert_one_line(run("score", files["sub30"], "--scoring", files["truncated"]), "damaged or truncated")


# --- items 8 and 9: finalize checks every input before the training data is built ------------


def _unavailable_device():
    return "cuda:99" if torch.cuda.is_available() else "cuda"


def test_finalize_checks_the_val_file_and_the_device_first(files, tmp_path, make_experiment, run):
    folder = make_experiment(tmp_path / "exp", train_size=200_000)  # building this would take many seconds
    done = run("finalize", "--experiment", folder, "--val-file", files["random"])
    assert_one_line(done, "not a torch file")
    assert "finalizing" not in done.stdout, done.seconds
    assert done.seconds < 30, done.seconds
    done = run("finalize", "--experiment", folder, "--val-file", tmp_path / "missing.pt")
    assert_one_line(done, "no such file")
    device = _unavailable_device()
    done = run("finalize", "--experiment", folder, "--device", device)
    line = assert_one_line(done, f"--device {device}: not available here")
    assert "available: cpu" in line
    assert "finalizing" not in done.stdout
    assert not (folder / "final").exists()


def test_generate_names_the_available_devices(files, tmp_path, run):
    device = _unavailable_device()
    done = run(
        "generate",
        "--model",
        files["truncated"],
        "--scoring",
        files["scoring"],
        "--out",
        tmp_path / "r.pt",
        "--device",
        device,
    )
    assert "available: cpu" in assert_one_line(done, f"--device {device}")
    assert_one_line(
        run("generate", "--model", files["truncated"], "--scoring", files["scoring"], "--device", "gpu0"),
        "not a device name",
    )


# --- item 10: an output folder, a truncated model, --storage a file --------------------------


def test_generate_out_a_folder_and_a_truncated_model_and_storage_a_file(files, tmp_path, run, tune):
    done = run("generate", "--model", files["truncated"], "--scoring", files["scoring"], "--out", tmp_path)
    assert_one_line(done, "is a folder")
    done = run("generate", "--model", files["truncated"], "--scoring", files["scoring"], "--out", tmp_path / "r.pt")
    assert_one_line(done, "damaged or truncated")
    done = run("generate", "--model", files["random"], "--scoring", files["scoring"], "--out", tmp_path / "r.pt")
    assert_one_line(done, "not a torch file")
    afile = tmp_path / "afile"
    afile.write_text("")
    done = tune("--config", SMOKE, "--name", "x", "--storage", afile)
    assert_one_line(done, "is a file, not a folder", prefix="twobirds-tune: error: ")
    assert afile.read_text() == ""


# --- items 1 and 11: an address where nothing listens fails in seconds ------------------------


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1", "localhost:1"])
def test_tune_fails_fast_when_nothing_listens_at_the_address(tmp_path, address, tune):
    done = tune("--config", SMOKE, "--name", "x", "--storage", tmp_path, "--address", address, timeout=60)
    line = assert_one_line(done, "nothing answers there", prefix="twobirds-tune: error: ")
    assert f"--address {address}" in line
    assert done.seconds < 15, done.seconds
    assert not (tmp_path / "x").exists()


# --- item 12: functions that do not reproduce the scoring file's own (x, y) -------------------


def test_score_refuses_functions_that_do_not_reproduce_the_scoring_file(files, run):
    line = assert_one_line(
        run("score", files["sub30"], "--scoring", files["scoring"], "--functions", *VARIANT), "do not reproduce"
    )
    assert VARIANT[0] in line
    assert "--functions" in line
    # the official default on a variant's file
    assert_one_line(run("score", files["variant30"], "--scoring", files["variant"]), "do not reproduce")
    # with its own functions the variant scores; a file without true x (zeros) is scored too
    assert run("score", files["variant30"], "--scoring", files["variant"], "--functions", *VARIANT).returncode == 0
    assert run("score", files["variant30"], "--scoring", files["no_true_x"], "--functions", *VARIANT).returncode == 0
