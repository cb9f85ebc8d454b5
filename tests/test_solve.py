from functools import partial

import pytest
import torch

from cvae.functions import FunctionPair
from cvae.lines import lines_from_endpoints, uniform_starts
from cvae.solve import MIN_DROP, _jacobian, _residuals, project, refine, rmse, solve

OFFICIAL = FunctionPair()


def _in_domain(p):
    return bool(((p >= 0) & (p <= 1)).all() and (p[:, 0] >= p[:, 1]).all() and (p[:, 2] <= p[:, 3]).all())


def _conditions(n, functions=OFFICIAL, seed=0):
    """n random exact line pairs (endpoints) and their float32 conditions y."""
    p = uniform_starts(n, generator=torch.Generator().manual_seed(seed))
    return p, functions(lines_from_endpoints(p))


def test_uniform_starts_are_monotone_line_pairs_in_the_box():
    p = uniform_starts(1000, generator=torch.Generator().manual_seed(1))
    assert p.shape == (1000, 4)
    assert p.dtype == torch.float32
    assert _in_domain(p)
    assert p.min() < 0.01
    assert p.max() > 0.99


def test_project_repairs_wrong_way_and_out_of_box_lines():
    p = torch.tensor([[0.2, 0.6, 0.9, 0.1], [1.3, -0.2, 0.3, 0.4], [0.0, 0.0, 1.0, 1.0]])
    q = project(p)
    # wrong-way lines become the line through their mean that still falls/rises by MIN_DROP
    h = MIN_DROP / 2
    expected = [[0.4 + h, 0.4 - h, 0.5 - h, 0.5 + h], [1.0, 0.0, 0.3, 0.4], [2 * h, 0.0, 1 - 2 * h, 1.0]]
    assert torch.allclose(q, torch.tensor(expected))
    assert _in_domain(q)
    assert (q[:, 0] > q[:, 1]).all()
    assert (q[:, 3] > q[:, 2]).all()


@pytest.mark.parametrize("texts", [None, ("exp(x0) - x1", "x0*x1 + sqrt(x1)")])
def test_jacobian_matches_autograd_row_by_row(texts):
    functions = OFFICIAL if texts is None else FunctionPair(texts)
    p = uniform_starts(3, generator=torch.Generator().manual_seed(8)).double()
    _, y = _conditions(3, functions, seed=9)
    r, jac = _jacobian(functions, p, y.double())
    for row in range(3):
        residuals = partial(_residuals, functions, y=y[row].double())
        assert torch.allclose(jac[row], torch.autograd.functional.jacobian(residuals, p[row]), atol=1e-10)
    assert torch.allclose(r, _residuals(functions, p, y.double()))


def test_refine_turns_near_solutions_into_exact_ones():
    truth, y = _conditions(256)
    noise = 0.02 * (2 * torch.rand(truth.shape, generator=torch.Generator().manual_seed(2)) - 1)
    p = refine(truth + noise, y, OFFICIAL)
    assert p.dtype == torch.float32
    assert _in_domain(p)
    err = rmse(p, y, OFFICIAL)
    assert err.median() < 1e-5
    assert (err < 1e-4).float().mean() >= 0.95  # the rest fell into a neighbouring local minimum
    # the start is 0.02 off: exact rows are the truth itself, not some other branch
    assert ((p - truth).abs().amax(-1)[err < 1e-4] < 1e-3).float().mean() >= 0.95


def test_refine_never_increases_the_residual_and_stays_in_the_domain():
    _, y = _conditions(64, seed=3)
    starts = uniform_starts(64, generator=torch.Generator().manual_seed(4))
    before = rmse(starts, y, OFFICIAL)
    after = refine(starts, y, OFFICIAL, steps=5)
    assert (rmse(after, y, OFFICIAL) <= before + 1e-12).all()
    assert _in_domain(after)


def test_refine_works_for_functions_outside_the_trig_family_and_in_float64():
    functions = FunctionPair(("exp(x0) - x1", "x0*x1 + sqrt(x1)"))
    truth, y = _conditions(32, functions, seed=5)
    p = refine(truth.double() + 0.01, y.double(), functions, steps=20)
    assert p.dtype == torch.float64
    assert (rmse(p, y, functions) < 1e-4).all()


def test_solve_finds_an_exact_solution_from_y_alone():
    _, y = _conditions(8, seed=6)
    p, err = solve(y, OFFICIAL, generator=torch.Generator().manual_seed(7))
    assert p.shape == (8, 4)
    assert err.shape == (8,)
    assert _in_domain(p)
    assert torch.allclose(err, rmse(p, y, OFFICIAL).float(), atol=1e-5)
    assert (err < 1e-4).sum() >= 7  # multi-start is probabilistic; 64 starts miss about 1.5%
