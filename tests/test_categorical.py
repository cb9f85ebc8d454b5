"""The categorical-latent CVAE: several exact solutions from the network alone, a prior that learns validity."""

import pytest
import torch

from cvae.config import Config
from cvae.data import DataSpec, branch_targets, load_challenge, make_dataset
from cvae.functions import FunctionPair
from cvae.lines import endpoints_from_lines, lines_from_endpoints
from cvae.losses import component_y_error
from cvae.metrics import branches, coverage, validity
from cvae.regimes import Regime, RegimeError
from cvae.sampling import sample
from cvae.train import Trainer, load_model

FUNCTIONS = FunctionPair()


def _config(**changes):
    base = dict(
        latent="categorical",
        components=16,
        hidden=64,
        depth=2,
        batch_size=64,
        epochs=20,
        lr=3e-3,
        sigma=0.01,
        sigma_start=0.1,
        sigma_anneal=6,
        wy=1.0,
        wy_delay=6,
        wv=1.0,
        val_samples=30,
        lr_schedule="cosine",
    )
    return Config(**{**base, **changes})


@pytest.fixture(scope="module")
def one_condition():
    """512 copies of one condition with 12 exact solutions, each row carrying all of them as targets."""
    x, y = make_dataset(40, FUNCTIONS, seed=3, distribution="uniform")
    counts = [len(b) for b in branches(y, FUNCTIONS, x_true=x)]
    row = max(range(40), key=lambda i: counts[i] if counts[i] <= 12 else 0)
    assert counts[row] >= 6
    n = 512
    xr, yr = x[row].expand(n, 50, 2).clone(), y[row].expand(n, 50, 2).clone()
    solutions = branch_targets(xr[:1], yr[:1], FUNCTIONS).expand(n, -1, -1).clone()
    return (xr, yr, solutions), (x[row : row + 1], y[row : row + 1])


@pytest.fixture(scope="module")
def trained(one_condition):
    train, val = one_condition
    trainer = Trainer(_config(), train, val, "cpu")
    trainer.fit()
    return trainer


def test_network_alone_samples_several_distinct_exact_solutions(trained, one_condition):
    _, (x_val, y_val) = one_condition
    generator = torch.Generator().manual_seed(0)
    x = sample(trained.model, y_val, 30, generator)  # network only: c ~ p(c | y), no check, no solver
    checks = validity(x, y_val, FUNCTIONS)
    assert checks["valid_frac"] >= 0.5, checks["valid_frac"]
    hits = coverage(x, y_val, FUNCTIONS, x_true=x_val)
    assert hits["hits"][0] >= 2, hits  # not collapsed onto one branch


def test_prior_mass_moves_to_valid_components_during_training(trained):
    mass = [row["val_prior_valid"] for row in trained.history]
    assert mass[0] < 0.1, mass
    assert mass[-1] > 0.5, mass
    assert mass[-1] > mass[0] + 0.4, mass


def test_every_regime_writes_a_submission_the_safe_loader_reads(trained, one_condition, tmp_path):
    from cvae.data import save_submission

    _, (_, y_val) = one_condition
    regimes = [Regime("network"), Regime("check", 40), Regime("refined", 40, 5), Regime("uniform", 40, 5)]
    for regime in regimes:
        x = regime.generate(trained.model, y_val, FUNCTIONS, samples=30, generator=torch.Generator().manual_seed(1))
        assert x.shape == (1, 30, 50, 2), regime.label
        path = save_submission(tmp_path / f"{regime.kind}.pt", x, y_val)
        rows_x, rows_y = load_challenge(path)  # weights_only=True with the TensorDataset allow-list
        assert rows_x.shape == (30, 50, 2)
        assert torch.equal(rows_y, y_val.expand(30, 50, 2))
    with pytest.raises(RegimeError, match="cannot select 30 samples from 10 proposals"):
        Regime("check", 10).generate(trained.model, y_val, FUNCTIONS, samples=30)


def test_check_regime_keeps_valid_components_without_a_solver(trained, one_condition):
    _, (_, y_val) = one_condition
    net = Regime("network").generate(trained.model, y_val, FUNCTIONS, 30, torch.Generator().manual_seed(2))
    checked = Regime("check", 300).generate(trained.model, y_val, FUNCTIONS, 30, torch.Generator().manual_seed(2))
    assert validity(checked, y_val, FUNCTIONS)["valid_frac"] >= validity(net, y_val, FUNCTIONS)["valid_frac"]
    # no solver: every kept sample is one of the network's components or a draw from its Gaussian (std sigma)
    ends, _ = trained.model.eval()(y_val)
    kept = endpoints_from_lines(checked)[0]
    assert (kept[:, None] - ends[0][None]).abs().amax(-1).min(1).values.max() < 6 * trained.config.sigma


def test_spread_sets_how_far_extra_proposals_stray_from_their_components(trained, one_condition):
    _, (_, y_val) = one_condition
    model, c = trained.model.eval(), trained.config.components
    ends = model(y_val)[0][0]

    def distances(spread):  # each proposal beyond the C components: max-abs endpoint distance to the nearest one
        x = sample(
            model, y_val, c + 200, torch.Generator().manual_seed(4), distinct=True, own_prior=False, spread=spread
        )
        extra = endpoints_from_lines(x)[0, c:]
        return (extra[:, None] - ends[None]).abs().amax(-1).min(1).values

    assert distances(0.0).max() < 1e-5  # no noise: copies of the components' line pairs
    narrow, wide = distances(0.002), distances(0.02)
    assert narrow.max() < 6 * 0.002
    assert wide.median() > 4 * narrow.median()  # the noise's std is the spread, in endpoint units
    assert "spread 0.002" in Regime("check", 300, spread=0.002).label
    with pytest.raises(RegimeError, match="spread must be a finite number >= 0"):
        Regime("check", 300, spread=-1.0)


def test_generate_checks_a_categorical_model_at_the_main_jobs_spread(trained, one_condition, tmp_path, capsys):
    from cvae.data import save_submission
    from cvae.regimes import CATEGORICAL_CHECK_SPREAD
    from scripts import generate

    _, (x_val, y_val) = one_condition
    model, scoring = (
        trained.save(tmp_path / "model.pt", resumable=False),
        save_submission(tmp_path / "y.pt", x_val[None], y_val),
    )
    for extra, label in (([], f"spread {CATEGORICAL_CHECK_SPREAD:g}"), (["--spread", "0.01"], "spread 0.01")):
        args = ["--model", str(model), "--scoring", str(scoring), "--regime", "check", "--device", "cpu", *extra]
        assert generate.main([*args, "--out", str(tmp_path / f"check{len(extra)}.pt")]) == 0
        assert f"regime: network + check (K=300, {label})" in capsys.readouterr().out


def test_checkpoint_resumes_bit_for_bit(one_condition, tmp_path):
    train, val = one_condition
    config = _config(epochs=4, wy_delay=2, sigma_anneal=2)
    straight = Trainer(config, train, val, "cpu")
    straight.fit()
    first = Trainer(config, train, val, "cpu")
    first.fit(2)
    first.save(tmp_path / "half.pt")
    resumed = Trainer.restore(tmp_path / "half.pt", train, val, "cpu")
    resumed.fit()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert [r["loss"] for r in straight.history] == [r["loss"] for r in resumed.history]
    model = load_model(tmp_path / "half.pt")
    assert model.config.latent == "categorical"
    assert model.config.components == 16


def test_config_builds_the_categorical_family_from_an_mlp_with_a_lines_head():
    config = Config(latent="categorical", model="conv", head="points")
    assert (config.model, config.head) == ("mlp", "lines")
    with pytest.raises(ValueError, match="latent: 'discrete' is not one of gaussian, categorical"):
        Config(latent="discrete")
    with pytest.raises(ValueError, match="sigma: must be > 0, got 0"):
        Config(latent="categorical", sigma=0)


def test_component_y_error_of_trig_functions_matches_the_pointwise_evaluation():
    _, y = make_dataset(8, FUNCTIONS, seed=1)
    ends = torch.rand(8, 5, 4, dtype=torch.float64)
    fast = component_y_error(ends, y.double(), FUNCTIONS)
    slow = (FUNCTIONS(lines_from_endpoints(ends, 50)) - y.double().unsqueeze(1)).square().mean((-2, -1))
    assert torch.allclose(fast, slow, atol=1e-10)
    other = FunctionPair(["x0 + x1", "x0 * x1"])  # outside the trig family: the pointwise path
    _, y2 = make_dataset(8, other, seed=1)
    assert component_y_error(ends, y2.double(), other).shape == (8, 5)


def test_all_branches_data_carries_every_solution_of_each_condition():
    train, _ = DataSpec(train_size=64, val_conditions=2, lines="uniform", x_targets="all_branches").build(FUNCTIONS)
    x, y, solutions = train
    counts = (~solutions[..., 0].isnan()).sum(1)
    assert solutions.shape[:1] == (64,)
    assert (counts >= 1).all()
    exact = torch.stack(
        [
            component_y_error(s[: int(c)][None].double(), yi[None].double(), FUNCTIONS).max()
            for s, c, yi in zip(solutions, counts, y)
        ]
    )
    assert exact.max() < 1e-8  # every target reproduces its condition
    own = endpoints_from_lines(x)  # the drawn line is one of them
    assert ((solutions - own[:, None]).abs().nan_to_num(nan=1.0).amax(-1).min(1).values < 1e-5).all()
