"""The search file is checked before Ray starts; small pieces of the search that need no Ray."""

import math
import runpy
import sys
from pathlib import Path

import pytest
import yaml

import search
from search.cli import main
from search.driver.trainable import _metrics, image_epochs
from search.spec import SearchConfigError, load_search_config, parse_search_config
from search.trials import DIVERGED, best_trial, read_results, stop_reason, stopped_early

CONFIGS_DIR = Path(search.__file__).parent / "configs"  # the checkout's search/configs (parametrizes below)
CONFIGS = sorted(CONFIGS_DIR.glob("*.yaml"))
SMOKE = CONFIGS_DIR / "smoke.yaml"


def _smoke() -> dict:
    return yaml.safe_load(SMOKE.read_text())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    spec = load_search_config(path)
    assert spec.max_t >= spec.asha.grace_period >= 1
    assert spec.trial_config({}).epochs == spec.max_t
    for point in spec.start_points:
        spec.trial_config(point)
    assert {p.name for p in CONFIGS} >= {"smoke.yaml", "laptop.yaml", "cluster.yaml"}


def _with(change):
    raw = _smoke()
    change(raw)
    return raw


BAD = {
    "unknown section": (lambda r: r.update(searchh={}), "searchh"),
    "unknown space key": (
        lambda r: r["space"].update(learning_rate={"type": "uniform", "low": 0, "high": 1}),
        "space.learning_rate",
    ),
    "unknown fixed key": (lambda r: r["fixed"].update(widht=3), "fixed.widht"),
    "unknown search key": (lambda r: r["search"].update(samples=3), "search.samples"),
    "unknown data key": (lambda r: r["data"].update(size=3), "data.size"),
    "unknown param key": (lambda r: r["space"]["lr"].update(scale="log"), "space.lr.scale"),
    "low > high": (lambda r: r["space"]["beta"].update(low=3.0, high=1.0), "space.beta"),
    "log with zero bound": (lambda r: r["space"]["lr"].update(low=0.0), "space.lr.low"),
    "log with negative bound": (
        lambda r: r["space"].update(free_bits={"type": "loguniform", "low": -1, "high": 1}),
        "space.free_bits.low",
    ),
    "int log with zero bound": (
        lambda r: r["space"].update(beta_warmup={"type": "int", "low": 0, "high": 8, "log": True}),
        "space.beta_warmup.low",
    ),
    "empty choice": (lambda r: r["space"]["optimizer"].update(values=[]), "space.optimizer.values"),
    "bad choice value": (
        lambda r: r["space"]["optimizer"].update(values=["Adam", "Adamax"]),
        "space.optimizer",
    ),
    "unknown type": (lambda r: r["space"]["lr"].update(type="normal"), "space.lr.type"),
    "fixed and searched": (lambda r: r["fixed"].update(lr=0.01), "space.lr"),
    "epochs searched": (
        lambda r: r["space"].update(epochs={"type": "int", "low": 1, "high": 4}),
        "space.epochs",
    ),
    "float range on an int key": (
        lambda r: r["space"].update(hidden={"type": "uniform", "low": 8, "high": 64}),
        "space.hidden",
    ),
    "range on a text key": (
        lambda r: r["space"].update(recon={"type": "uniform", "low": 0, "high": 1}),
        "space.recon",
    ),
    "bad objective": (lambda r: r["search"].update(objective="accuracy"), "search.objective"),
    "zero samples": (lambda r: r["search"].update(num_samples=0), "search.num_samples"),
    "grace above max_t": (lambda r: r["asha"].update(grace_period=9), "asha.grace_period"),
    "max_t vs epochs": (lambda r: r["fixed"].update(epochs=7), "asha.max_t"),
    "bad function": (lambda r: r.update(functions=["cos(49*x0 + 42*x2)", "cos(x1)"]), "functions"),
    "one function": (lambda r: r.update(functions=["cos(x0)"]), "functions"),
    "missing data file": (lambda r: r["data"].update(val_file="no/such/file.pt"), "data.val_file"),
    "start point outside": (lambda r: r.update(start_points=[{"lr": 5.0}]), "start_points[0].lr"),
    "start point unknown key": (lambda r: r.update(start_points=[{"hidden": 32}]), "start_points[0].hidden"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_search_file_names_the_key(case, tmp_path):
    change, key = BAD[case]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with(change)))
    with pytest.raises(SearchConfigError) as err:
        load_search_config(path)
    message = str(err.value)
    assert key in message, message
    assert "\n" not in message, message
    assert message.startswith(str(path)), message


def test_numbers_written_as_1e_minus_4_are_accepted():
    raw = _smoke()
    raw["space"]["lr"] = {"type": "loguniform", "low": "1e-4", "high": "1e-2"}  # how PyYAML reads 1e-4
    assert parse_search_config(raw).space["lr"].low == 1e-4


def test_bad_file_errors_before_ray_starts(tmp_path, monkeypatch, capsys):
    import ray

    def no_ray(*args, **kwargs):
        raise AssertionError("ray.init was called for a bad search file")

    monkeypatch.setattr(ray, "init", no_ray)
    for case in ("low > high", "empty choice", "unknown space key", "log with zero bound"):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(_with(BAD[case][0])))
        assert main(["--config", str(path), "--name", "x", "--storage", str(tmp_path / "runs")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("twobirds-tune: error:"), err
        assert BAD[case][1] in err, err
        assert "\n" not in err, err
    assert not (tmp_path / "runs" / "x").exists()
    # command-line values are validated too
    assert main(["--config", str(SMOKE), "--name", "x", "--storage", str(tmp_path), "--num-samples", "0"]) == 2
    assert "search.num_samples" in capsys.readouterr().err


def test_cli_help_runs_from_the_repo_root(repo, monkeypatch, capsys):
    """`python scripts/tune.py --help` from the checkout: the file run as __main__ (in-process, runpy)."""
    monkeypatch.chdir(repo)
    monkeypatch.setattr(sys, "argv", ["scripts/tune.py", "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path("scripts/tune.py", run_name="__main__")
    out = capsys.readouterr()
    assert done.value.code == 0, out.err
    for flag in (
        "--config",
        "--name",
        "--storage",
        "--num-samples",
        "--address",
        "--cpus-per-trial",
        "--gpus-per-trial",
        "--time-budget",
        "--resume",
    ):
        assert flag in out.out


def test_image_epochs_cover_first_rungs_and_last():
    assert image_epochs(4, 1, 2) == [1, 2, 4]
    assert image_epochs(30, 3, 3) == [1, 3, 9, 27, 30]


def test_diverged_epoch_reports_a_finite_floor_or_inf_never_nan():
    row = {"loss": math.inf, "kld": math.inf, "x_loss": 0.3, "y_loss": math.inf, "epoch": 3}
    score = _metrics(row, "val_score", "127.0.0.1")
    assert score["val_score"] == DIVERGED["val_score"]
    assert score["diverged"] == 1
    assert next(iter(score)) == "val_score"  # the objective leads the console table
    assert _metrics(row, "loss", "127.0.0.1")["loss"] == math.inf
    nan_score = _metrics({"loss": 1.0, "val_score": math.nan, "epoch": 1}, "val_score", "n")
    assert nan_score["val_score"] == DIVERGED["val_score"]
    assert nan_score["diverged"] == 0


def test_stop_reasons():
    assert stopped_early({"done": True, "epoch": 1}, 4)
    assert not stopped_early({"done": True, "epoch": 4}, 4)  # ASHA also stops at max_t: finished
    assert not stopped_early({"done": True, "epoch": 2, "diverged": 1}, 4)
    assert not stopped_early({"done": False, "epoch": 2}, 4)  # the experiment ended it, not ASHA
    assert stop_reason("TERMINATED", {"done": True, "epoch": 1}, 4) == "asha"
    assert stop_reason("TERMINATED", {"done": True, "epoch": 4}, 4) == "finished"
    assert stop_reason("TERMINATED", {"done": True, "epoch": 2, "diverged": 1}, 4) == "diverged"
    assert stop_reason("TERMINATED", {"done": False, "epoch": 2}, 4) == "time_budget"
    assert stop_reason("TERMINATED", {}, 4) == "time_budget"  # never ran before the budget ended
    assert stop_reason("RUNNING", {"done": False, "epoch": 2}, 4) == "interrupted"
    assert stop_reason("ERROR", {"epoch": 1}, 4) == "error"


def test_refined_objective_needs_refinement_steps():
    raw = _smoke()
    raw["search"]["objective"] = "refined_score"
    raw["fixed"].pop("val_refine_steps", None)
    with pytest.raises(SearchConfigError, match=r"fixed\.val_refine_steps"):
        parse_search_config(raw)
    raw["fixed"]["val_refine_steps"] = 5
    spec = parse_search_config(raw)
    assert (spec.metric, spec.mode) == ("val_refined_score", "max")
    assert spec.trial_config({}).val_refine_steps == 5


def _two_families() -> dict:
    raw = _smoke()
    raw["fixed"].pop("latent_dim")
    raw["space"] = {
        "latent": {"type": "choice", "values": ["gaussian", "categorical"]},
        "lr": {"type": "loguniform", "low": 1.0e-4, "high": 3.0e-2},
        "latent_dim": {"type": "int", "low": 2, "high": 8, "when": {"latent": "gaussian"}},
        "components": {"type": "int", "low": 4, "high": 16, "when": {"latent": ["categorical"]}},
        "wv": {"type": "uniform", "low": 0.0, "high": 2.0, "when": {"latent": "categorical"}},
    }
    raw["start_points"] = [{"latent": "categorical", "lr": 1.0e-3, "components": 8, "wv": 1.0}]
    return raw


def test_each_latent_family_searches_its_own_keys_in_a_real_optuna_study():
    import optuna

    spec = parse_search_config(_two_families())
    space = spec.optuna_space()
    assert space.conditional
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0, group=True))
    study.enqueue_trial(spec.start_points[0])
    families = set()
    for i in range(12):
        trial = study.ask()
        space(trial)
        params = set(trial.params)
        family = trial.params["latent"]
        families.add(family)
        own = {"latent_dim"} if family == "gaussian" else {"components", "wv"}
        assert params == {"latent", "lr", *own}, trial.params
        spec.trial_config(trial.params)  # every suggestion is a Config the trainer accepts
        study.tell(trial, float(i))
    assert families == {"gaussian", "categorical"}
    assert study.trials[0].params["components"] == 8  # the start point ran first, as written


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["components"].update(when={"latnt": "categorical"}), "when.latnt: not a searched"),
        (lambda s: s["components"].update(when={"latent": "discrete"}), "'discrete' is not one of space.latent"),
        (lambda s: s["components"].update(when={"lr": 1.0}), "only a choice key can be a condition"),
        (lambda s: s["components"].update(when="categorical"), "space.components.when: expected a mapping"),
    ],
)
def test_bad_conditions_name_the_key(change, message):
    raw = _two_families()
    change(raw["space"])
    with pytest.raises(SearchConfigError, match=message):
        parse_search_config(raw)


def test_a_start_point_names_the_condition_of_its_conditional_keys():
    raw = _two_families()
    raw["start_points"] = [{"lr": 1.0e-3, "components": 8}]
    with pytest.raises(SearchConfigError, match=r"start_points\[0\].components: searched only when latent in"):
        parse_search_config(raw)


@pytest.mark.parametrize(
    ("mode", "epochs"),
    # survivors: not at the grace period (epoch 2 here), where most trials stop
    [("survivors", [4, 8]), ("rungs", [2, 4, 8]), ("first_and_rungs", [1, 2, 4, 8]), ("none", [])],
)
def test_search_images_choose_the_epochs_a_trial_draws_plots_at(mode, epochs):
    from search.driver.tuner import trial_images

    raw = yaml.safe_load(SMOKE.read_text())
    raw["asha"] = {"max_t": 8, "grace_period": 2, "reduction_factor": 2}
    raw["search"]["images"] = mode
    assert trial_images(parse_search_config(raw)) == epochs


def test_results_table_keeps_trial_ids_that_look_like_numbers(tmp_path):
    # Ray's trial ids are 8 hex digits: "4967e050" is also a float's text (4.967e53) to pandas
    path = tmp_path / "results.csv"
    path.write_text("trial_id,run,node,status,stop_reason,score\n4967e050,t01,10e1,TERMINATED,finished,0.3\n")
    table = read_results(path)
    assert best_trial(table, "max")["trial_id"] == "4967e050"
    assert table["node"].tolist() == ["10e1"]
