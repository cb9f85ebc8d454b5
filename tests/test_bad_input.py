"""Bad input and faults (issue 14): each ends in one line, exit 2, no traceback, before heavy work.

Every case runs the command in-process through its main(argv), as the script does (the
`one_line_error` fixture), and measures the time to fail. Items 1-12 of the issue need no
running Ray: the checks all come before Ray starts.
"""

import os

import pytest
import torch
import yaml
from torch.utils.data import TensorDataset

from cvae.data import make_dataset
from cvae.functions import FunctionPair

VARIANT = ["sin(30*x0 + 20*x1)", "cos(25*x0 + 35*x1)"]


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
    [
        ("--mix", "2", "--mix 2: must lie in [0, 1]"),
        ("--mix", "-0.5", "--mix -0.5"),
        ("--temperature", "0", "> 0"),
        ("--spread", "-0.01", "--spread -0.01: must be a finite number >= 0"),
    ],
)
def test_generate_refuses_out_of_range_mix_temperature_and_spread(
    files, tmp_path, flag, value, message, one_line_error
):
    out = tmp_path / "result.pt"
    model, scoring = files["truncated"], files["scoring"]
    args = ("--model", model, "--proposals-from", "mixed", "--scoring", scoring, "--out", out, flag, value)
    one_line_error("generate", *args, message=message)
    assert not out.exists()


def test_score_refuses_a_submission_without_the_expected_samples_per_condition(files, one_line_error, run_main):
    one_line_error(
        "score", files["sub60"], "--scoring", files["scoring"], message="60 samples per condition, expected 30"
    )
    assert run_main("score", files["sub60"], "--scoring", files["scoring"], "--samples", "60").returncode == 0
    assert run_main("score", files["sub30"], "--scoring", files["scoring"]).returncode == 0


# --- item 3: the experiment name is one folder name ---------------------------------------


@pytest.mark.parametrize("name", ["../../escape", "a/b", "/tmp/abs", "..", ".hidden", ""])
def test_tune_refuses_a_name_that_is_not_one_folder_and_writes_nothing(tmp_path, name, smoke, one_line_error):
    storage = tmp_path / "a" / "b" / "storage"
    one_line_error("tune", "--config", smoke, "--name", name, "--storage", storage, message="must be one folder name")
    assert list(tmp_path.rglob("*")) == []  # nothing inside --storage, nothing beside or above it


# --- item 5: data files of the search file are read before Ray starts -------------------------


@pytest.mark.parametrize(("kind", "message"), [("random", "not a torch file"), ("empty", "has no rows")])
def test_tune_checks_the_search_files_data_files_before_ray_starts(
    files, tmp_path, kind, message, smoke, one_line_error
):
    raw = yaml.safe_load(smoke.read_text())
    raw["data"]["val_file"] = str(files[kind])
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump(raw))
    line = one_line_error("tune", "--config", config, "--name", "x", "--storage", tmp_path / "runs", message=message)
    assert "data:" in line, (line, line.ran.seconds)
    assert line.ran.seconds < 30, (line, line.ran.seconds)
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
    files, tmp_path, expression, message, smoke, one_line_error
):
    one_line_error("score", files["sub30"], "--functions", expression, "x1", message=message)
    raw = yaml.safe_load(smoke.read_text())
    raw["functions"] = [expression, "x1"]
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump(raw))
    one_line_error("tune", "--config", config, "--name", "x", "--storage", tmp_path, message=message)


# --- item 7: not a torch file, an empty submission ---------------------------------------


def test_random_bytes_are_not_a_torch_file_and_an_empty_submission_is_refused(files, one_line_error):
    one_line_error("score", files["random"], message="not a torch file")
    one_line_error("score", files["empty"], message="has no rows")
    one_line_error("score", files["sub30"], "--scoring", files["truncated"], message="damaged or truncated")


# --- items 8 and 9: finalize checks every input before the training data is built ------------


def _unavailable_device():
    return "cuda:99" if torch.cuda.is_available() else "cuda"


def test_finalize_checks_the_val_file_and_the_device_first(files, tmp_path, make_experiment, one_line_error):
    folder = make_experiment(tmp_path / "exp", train_size=200_000)  # building this would take many seconds
    line = one_line_error("finalize", "--experiment", folder, "--val-file", files["random"], message="not a torch file")
    assert "finalizing" not in line.ran.stdout, line.ran.seconds
    assert line.ran.seconds < 30, line.ran.seconds
    one_line_error("finalize", "--experiment", folder, "--val-file", tmp_path / "missing.pt", message="no such file")
    device = _unavailable_device()
    line = one_line_error(
        "finalize", "--experiment", folder, "--device", device, message=f"--device {device}: not available here"
    )
    assert "available: cpu" in line
    assert "finalizing" not in line.ran.stdout
    assert not (folder / "final").exists()


def test_generate_names_the_available_devices(files, tmp_path, one_line_error):
    device = _unavailable_device()
    model, scoring = files["truncated"], files["scoring"]
    args = ("--model", model, "--scoring", scoring, "--out", tmp_path / "r.pt", "--device", device)
    assert "available: cpu" in one_line_error("generate", *args, message=f"--device {device}")
    args = ("--model", model, "--scoring", scoring, "--device", "gpu0")
    one_line_error("generate", *args, message="not a device name")


# --- item 10: an output folder, a truncated model, --storage a file --------------------------


def test_generate_out_a_folder_and_a_truncated_model_and_storage_a_file(files, tmp_path, smoke, one_line_error):
    scoring = ("--scoring", files["scoring"])
    one_line_error("generate", "--model", files["truncated"], *scoring, "--out", tmp_path, message="is a folder")
    out = ("--out", tmp_path / "r.pt")
    one_line_error("generate", "--model", files["truncated"], *scoring, *out, message="damaged or truncated")
    one_line_error("generate", "--model", files["random"], *scoring, *out, message="not a torch file")
    afile = tmp_path / "afile"
    afile.write_text("")
    one_line_error("tune", "--config", smoke, "--name", "x", "--storage", afile, message="is a file, not a folder")
    assert afile.read_text() == ""


# --- items 1 and 11: an address where nothing listens fails in seconds ------------------------


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1", "localhost:1"])
def test_tune_fails_fast_when_nothing_listens_at_the_address(tmp_path, address, smoke, one_line_error):
    args = ("--config", smoke, "--name", "x", "--storage", tmp_path, "--address", address)
    line = one_line_error("tune", *args, message="nothing answers there")
    assert f"--address {address}" in line
    assert line.ran.seconds < 15, line.ran.seconds
    assert not (tmp_path / "x").exists()


# --- item 12: functions that do not reproduce the scoring file's own (x, y) -------------------


def test_score_refuses_functions_that_do_not_reproduce_the_scoring_file(files, one_line_error, run_main):
    args = (files["sub30"], "--scoring", files["scoring"], "--functions", *VARIANT)
    line = one_line_error("score", *args, message="do not reproduce")
    assert VARIANT[0] in line
    assert "--functions" in line
    # the official default on a variant's file
    one_line_error("score", files["variant30"], "--scoring", files["variant"], message="do not reproduce")
    # with its own functions the variant scores; a file without true x (zeros) is scored too
    assert run_main("score", files["variant30"], "--scoring", files["variant"], "--functions", *VARIANT).returncode == 0
    assert (
        run_main("score", files["variant30"], "--scoring", files["no_true_x"], "--functions", *VARIANT).returncode == 0
    )
