"""Issue 26: the levers for the network's own samples, and the benches that measure them.

Fast (seconds); the benches run in --quick mode (bench/search_budget.py's real searches are in the slow tier).
No test asserts a timing or a benchmark's quality number.
"""

from __future__ import annotations

import importlib
import re
import sys

import pandas as pd
import pytest
import torch
import yaml

from cvae.config import Config, ConfigError
from cvae.data import DataSpec, make_dataset
from cvae.functions import FunctionPair
from cvae.lines import endpoints_from_lines
from cvae.losses import closed_form_ok, component_y_error, line_y_error, sigma_at
from cvae.model import build_model, condition_inputs, monotone_endpoints
from cvae.regimes import CATEGORICAL_CHECK_SPREAD, Regime
from cvae.sampling import sample
from cvae.train import Trainer, load_model

VARIANT = FunctionPair(["sin(5*x0 + 3*x1)", "cos(4*x0 + 8*x1)"])
CATEGORICAL = dict(latent="categorical", components=8, hidden=32, depth=1, wy=1.0, wv=1.0, batch_size=64, epochs=2)


@pytest.fixture(autouse=True, scope="module")
def bench_on_path(repo):
    sys.path.insert(0, str(repo))  # `import bench.x`, as the benches import bench.common
    yield
    sys.path.remove(str(repo))


@pytest.mark.parametrize("functions", [FunctionPair(), VARIANT], ids=["official", "variant"])
def test_closed_form_y_error_matches_the_pointwise_one_with_its_gradient(functions):
    x, y = make_dataset(32, functions, seed=1, distribution="uniform")
    truth = endpoints_from_lines(x)
    ends = monotone_endpoints(torch.randn(32, 6, 4, generator=torch.Generator().manual_seed(0)) * 2)
    ends = torch.cat([ends, truth.unsqueeze(1)], dim=1).requires_grad_()  # the exact solution among them
    pointwise, closed = component_y_error(ends, y, functions), line_y_error(ends, truth, functions, 50)
    assert torch.allclose(pointwise, closed, atol=5e-5)
    assert closed[:, -1].max() < 1e-5  # the condition's own line reproduces it
    (g_pointwise,) = torch.autograd.grad(pointwise.sum(), ends)
    (g_closed,) = torch.autograd.grad(closed.sum(), ends)
    assert torch.allclose(g_pointwise, g_closed, atol=1e-2, rtol=1e-3)


def test_closed_form_needs_sin_cos_slow_enough_per_point():
    assert closed_form_ok(FunctionPair(), 50)
    assert not closed_form_ok(FunctionPair(["cos(400*x0 + 42*x1)", "cos(56*x0 + 63*x1)"]), 50)
    assert not closed_form_ok(FunctionPair(["x0 * x1", "cos(56*x0 + 63*x1)"]), 50)


def test_training_uses_the_closed_form_only_for_lines_that_reproduce_y():
    config = Config(**CATEGORICAL)
    train, _ = DataSpec(train_size=64, val_conditions=2, x_targets="all_branches").build(config)
    assert Trainer(config, train, None, "cpu").truth is not None
    noisy = (train[0] + 0.01, train[1], train[2])  # lines that do not reproduce their y
    assert Trainer(config, noisy, None, "cpu").truth is None


def test_precision_phase_narrows_sigma_over_the_last_epochs():
    config = Config(**CATEGORICAL, sigma=0.01, sigma_start=0.1, sigma_anneal=4, sigma_final=0.002, precision_epochs=3)
    config = config.replace(epochs=10)
    sigmas = [sigma_at(config, epoch) for epoch in range(10)]
    assert sigmas[0] == pytest.approx(0.1)
    assert sigmas[4:7] == pytest.approx([0.01] * 3)  # annealed, then held until the precision phase
    assert sigmas[7] < 0.01
    assert sigmas[8] < sigmas[7]
    assert sigmas[9] == pytest.approx(0.002)
    assert sigma_at(config.replace(sigma_final=0.0), 9) == pytest.approx(0.01)  # off by default


def test_arccos_inputs_are_a_fixed_transform_of_y_in_a_saved_model(tmp_path):
    y = torch.tensor([[[1.0, -1.0], [0.0, 0.5]]])
    features = condition_inputs(y, "y_arccos")
    assert torch.allclose(features[0, :4], y.flatten())
    assert torch.allclose(features[0, 4:], torch.tensor([-1.0, 1.0, 0.0, -1 / 3]), atol=1e-6)
    assert torch.equal(condition_inputs(y, "y"), y.flatten(1))
    config = Config(**CATEGORICAL, condition_features="y_arccos")
    train, _ = DataSpec(train_size=64, val_conditions=2, x_targets="all_branches").build(config)
    trainer = Trainer(config, train, None, "cpu")
    trainer.fit()
    loaded = load_model(trainer.save(tmp_path / "model.pt", resumable=False))
    assert loaded.config.condition_features == "y_arccos"
    x = Regime("network").generate(loaded, train[1][:3], FunctionPair(), 5, torch.Generator().manual_seed(0))
    assert x.shape == (3, 5, 50, 2)
    with pytest.raises(ConfigError, match="condition_features"):
        Config(condition_features="arcsin")


def test_gaussian_models_see_the_same_inputs():
    config = Config(model="mlp", head="lines", encoder_sees_y=True, condition_features="y_arccos", hidden=16)
    model = build_model(config)
    y = torch.rand(4, 50, 2) * 2 - 1
    x_hat, _, _ = model(torch.rand(4, 50, 2), y)
    assert x_hat.shape == (4, 50, 2)


def test_prior_temperature_sharpens_the_network_samples():
    model = build_model(Config(**CATEGORICAL)).eval()
    y = torch.rand(2, 50, 2) * 2 - 1
    with torch.no_grad():
        ends, log_prior = model(y)
    top = ends[torch.arange(2), log_prior.argmax(1)]

    def share_of_top(temperature: float, own_prior: bool = True) -> float:
        model.config = model.config.replace(prior_temperature=temperature)
        x = sample(model, y, 400, torch.Generator().manual_seed(0), own_prior=own_prior)
        return (endpoints_from_lines(x) - top[:, None]).abs().amax(-1).lt(1e-5).float().mean().item()

    assert share_of_top(1e-4) > 0.95 > 0.5 > share_of_top(1.0)
    assert share_of_top(1e-4, own_prior=False) < 0.5  # proposals for a check or a solver: the regime's temperature


def test_systematic_draws_spread_over_the_components_with_the_same_marginals():
    from cvae.sampling import independent, systematic

    probs = torch.tensor([[0.5, 0.3, 0.2], [0.05, 0.05, 0.9]])
    picks = systematic(probs, 10, torch.Generator().manual_seed(0))
    counts = torch.stack([torch.bincount(row, minlength=3) for row in picks])
    assert (counts - 10 * probs).abs().max() < 1  # floor(n p) or ceil(n p) draws of each component
    generator = torch.Generator().manual_seed(1)
    totals = sum(torch.bincount(systematic(probs[:1], 3, generator)[0], minlength=3) for _ in range(3000))
    assert torch.allclose(totals / 9000, probs[0], atol=0.02)  # each draw is still distributed as probs
    spread = sum(len(set(systematic(probs[:1], 3, generator)[0].tolist())) for _ in range(200))
    repeats = sum(len(set(independent(probs[:1], 3, generator)[0].tolist())) for _ in range(200))
    assert spread > repeats  # more distinct components per condition than independent draws


def test_levers_bench_quick(capsys):
    levers = importlib.import_module("bench.levers")
    levers.main(["--quick", "--temperatures", "1,0.5", "--refined"])
    out = capsys.readouterr().out
    check = f"network + check (K=300, spread {CATEGORICAL_CHECK_SPREAD:g})"  # the main job's check
    shown = ("network only (T=1, independent)", "network only (T=0.5, independent)", check)
    for regime in (*shown, "network + refinement"):
        assert regime in out
    assert out.strip().splitlines()[-1].startswith("RESULT network_coverage_norm_")


def test_levers_checks_at_each_temperature_asked(capsys):
    levers = importlib.import_module("bench.levers")
    levers.main(["--quick", "--check-temperatures", "0.2,0.7", "--check-spreads", "0.003"])
    out = capsys.readouterr().out
    assert "network + check (K=300, T=0.2, spread 0.003)" in out
    assert "network + check (K=300, T=0.7, spread 0.003)" in out
    assert f"spread {CATEGORICAL_CHECK_SPREAD:g})" not in out  # instead of the default
    assert "network + refinement" not in out  # not asked


def test_levers_scores_weight_averages_beside_the_weights_as_trained(capsys):
    levers = importlib.import_module("bench.levers")
    levers.main(["--quick", "--ema", "0.5,0.9"])
    out = capsys.readouterr().out
    for weights in ("as trained", "EMA 0.5", "EMA 0.9"):
        assert f"rows 0-2, {weights} |" in out or f"synthetic rows 0-2, {weights} |" in out
    assert sum(line.startswith("RESULT") for line in out.splitlines()) == 2  # the goals: the weights as trained
    with pytest.raises(SystemExit):
        levers.main(["--model", "any.pt", "--ema", "0.9"])
    assert "drop --model" in capsys.readouterr().err


def test_levers_names_only_the_changes_to_its_recipe(capsys):
    levers = importlib.import_module("bench.levers")
    levers.main(["--quick", "--set", "hidden=48"])
    assert "changes {'hidden': 48}" in capsys.readouterr().out


def test_levers_refuses_a_bad_temperature_before_training(capsys):
    levers = importlib.import_module("bench.levers")
    bad = (("--check-temperatures", "0.3,x"), ("--temperatures", "0"), ("--check-spreads", "-0.1"), ("--ema", "1"))
    for flag, text in bad:
        with pytest.raises(SystemExit):
            levers.main(["--quick", flag, text])
        out, err = capsys.readouterr()
        assert f"argument {flag}:" in err
        assert "epoch 1" not in out  # refused before any training


def test_levers_scores_fresh_synthetic_conditions_instead_of_official_rows(capsys):
    levers = importlib.import_module("bench.levers")
    levers.main(["--quick", "--synthetic", "3"])
    out = capsys.readouterr().out
    assert "| 3 fresh synthetic |" in out
    assert "rows 0-" not in out
    assert "RESULT network_valid_frac_3_fresh_synthetic" in out


def test_network_errors_splits_the_squared_error_and_names_conditions_the_check_misses(tmp_path, capsys):
    importlib.import_module("bench.levers").main(["--quick", "--out", str(tmp_path / "model.pt")])
    capsys.readouterr()
    errors = importlib.import_module("bench.network_errors")
    errors.main(["--model", str(tmp_path / "model.pt"), "--synthetic", "4", "--min-p", "0.5"])
    out = capsys.readouterr().out
    shares = [line.split("|") for line in out.splitlines() if "| sample RMSE " in line]
    assert len(shares) == len(errors.RMSE_BINS)
    assert sum(float(row[3]) for row in shares) == pytest.approx(1.0, abs=0.01)  # every sample in one bin
    assert sum(float(row[5]) for row in shares) == pytest.approx(1.0, abs=0.01)  # and all the squared error
    assert "| network only | " in out
    assert "network only, prior tail under 0.5 x the likeliest cut" in out
    # a one-epoch model leaves conditions without one valid check draw, and each is named
    assert "network + check finds no valid draw: condition " in out


def test_network_errors_refuses_a_missing_or_gaussian_model_in_one_line(tmp_path, capsys):
    errors = importlib.import_module("bench.network_errors")
    assert errors.main(["--model", str(tmp_path / "none.pt")]) == 2
    assert "--model" in capsys.readouterr().err
    config = Config(epochs=1, batch_size=64)  # the Gaussian family
    train, _ = DataSpec(train_size=64, val_conditions=2).build(config)
    trainer = Trainer(config, train, None, "cpu")
    trainer.fit()
    assert errors.main(["--model", str(trainer.save(tmp_path / "model.pt", resumable=False))]) == 2
    err = capsys.readouterr().err.strip()
    assert "gaussian-latent model; this bench reads a categorical one's" in err
    assert len(err.splitlines()) == 1


def test_objective_alignment_scores_each_trials_last_checkpoint(tmp_path, capsys):
    alignment = importlib.import_module("bench.objective_alignment")
    config = Config(**CATEGORICAL, val_samples=4)
    train, val = DataSpec(train_size=128, val_conditions=3, x_targets="all_branches").build(config)
    records = []
    for i, epochs in enumerate((1, 2, 2)):
        trainer = Trainer(config.replace(lr=10 ** -(2 + i)), train, val, "cpu")
        run = tmp_path / f"t{i}"
        for epoch in range(1, epochs + 1):
            trainer.fit(epoch)
            trainer.save(run / f"checkpoint_{epoch - 1:06d}" / "trainer.pt")
        records.append({"run": run.name, "epochs": epochs + (i == 0), "score": trainer.history[-1]["val_score"]})
    (tmp_path / "no_checkpoint").mkdir()
    records.append({"run": "no_checkpoint", "epochs": 1, "score": 0.0})
    pd.DataFrame(records).to_csv(tmp_path / "results.csv", index=False)
    rows, skipped = alignment.trial_rows(tmp_path, [(0, 1)])
    assert skipped == ["no_checkpoint"]
    assert [r["epoch"] for r in rows] == [1, 2, 2]  # each trial's highest checkpoint
    assert [r["last_epoch"] for r in rows] == [2, 2, 2]
    assert all(0.0 <= r["valid_frac"] <= 1.0 for r in rows)
    alignment.report(rows, skipped, "0-1", "test")
    out = capsys.readouterr().out
    assert "RESULT spearman_val_score_vs_official_valid_test" in out
    assert "RESULT trials_scored_test 3.000 goal >= 3 met" in out


def test_demo_seed_sets_every_seed_in_a_copy_of_the_search_file(tmp_path, smoke):
    from scripts.demo import SearchFileError, seeded_search_file

    copy = seeded_search_file(smoke, 7, tmp_path)
    raw = yaml.safe_load(copy.read_text())
    assert (raw["search"]["seed"], raw["fixed"]["seed"], raw["data"]["seed"]) == (7, 7, 7)
    assert raw["space"] == yaml.safe_load(smoke.read_text())["space"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: [1, 2]\n")
    with pytest.raises(SearchFileError, match="not a search file"):
        seeded_search_file(bad, 1, tmp_path)


def test_demo_seed_is_refused_in_one_line_before_any_search(one_line_error, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("{unclosed\n")
    one_line_error(
        "demo", "--config", bad, "--seed", "3", "--out", tmp_path / "out", message="cannot read the search file"
    )


@pytest.mark.slow
def test_search_budget_quick_searches_finalizes_and_scores_each_budget(capsys, tmp_path):
    budget = importlib.import_module("bench.search_budget")
    budget.main(["--quick", "--json", str(tmp_path / "runs.json")])
    out = capsys.readouterr().out
    assert "| 1 min |" in out
    assert "| 1.5 min |" in out
    for regime in ("network only", "network + check (K=300", "network + refinement (K=30, 20 LM steps"):
        assert regime in out
    results = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert [line.split()[1] for line in results] == [
        f"{name}_{kind}"
        for kind in ("network", "check", "refined")
        for name in ("quality_rises_with_budget", "longest_minus_shortest")
    ]
    gains = [line.split()[2] for line in results if "longest_minus_shortest" in line]
    assert all(re.fullmatch(r"[+-]\d\.\d{4}", gain) for gain in gains), gains  # a tiny gain is not shown as 0.000


def test_search_budget_refuses_a_negative_final_max_lr(capsys):
    budget = importlib.import_module("bench.search_budget")
    with pytest.raises(SystemExit):
        budget.main(["--final-max-lr", "-0.001"])
    assert "--final-max-lr: must be >= 0" in capsys.readouterr().err


@pytest.mark.slow
def test_objective_alignment_quick_runs_a_search_and_correlates(capsys):
    alignment = importlib.import_module("bench.objective_alignment")
    alignment.main(["--quick"])
    out = capsys.readouterr().out
    assert "RESULT spearman_val_score_vs_official_valid_alignment" in out
    assert "trial(s) without checkpoint" in out
