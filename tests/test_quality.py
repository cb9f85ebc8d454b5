"""Issue 7: diverse valid solutions; refinement, selection and the quality benchmark.

Fast (seconds on one CPU thread); no test asserts a timing or a benchmark's quality number.
"""

from __future__ import annotations

import importlib.util

import torch

from cvae.config import Config
from cvae.data import make_dataset
from cvae.functions import FunctionPair
from cvae.lines import lines_from_endpoints
from cvae.metrics import branches, coverage, validity
from cvae.sampling import generate, select
from cvae.solve import rmse, uniform_starts
from cvae.train import Trainer

OFFICIAL = FunctionPair()


def _condition_with_branches(at_least: int, seed: int = 5):
    """(x, y) of one synthetic condition (1, 50, 2) with at least `at_least` branches, and its branches."""
    x, y = make_dataset(64, OFFICIAL, seed=seed)
    sets = branches(y, OFFICIAL, x_true=x)
    row = next(i for i, b in enumerate(sets) if len(b) >= at_least)
    return x[row : row + 1], y[row : row + 1], sets[row]


def test_short_training_with_diversity_options_reaches_several_branches():
    torch.manual_seed(0)
    x, y = make_dataset(1500, OFFICIAL, seed=1)
    # the recipe that beat uniform starts in docs/quality.md: a pure density model of x given y
    # (no y-loss), free bits so the latent is used, proposals drawn at temperature 2
    config = Config(
        model="mlp",
        head="lines",
        hidden=64,
        depth=2,
        latent_dim=8,
        encoder_sees_y=True,
        beta=1.0,
        free_bits=0.5,
        wy=0.0,
        recon="mse",
        epochs=3,
        batch_size=128,
    )
    trainer = Trainer(config, (x, y), None, device="cpu")
    trainer.fit()
    _, y_cond, branch_set = _condition_with_branches(6)
    generator = torch.Generator().manual_seed(0)
    samples = generate(
        trainer.model, y_cond, OFFICIAL, samples=30, proposals=90, refine_steps=15, generator=generator, temperature=2.0
    )
    cover = coverage(samples, y_cond, OFFICIAL, branch_sets=[branch_set])
    assert int(cover["hits"][0]) >= 2  # the network's proposals are not collapsed onto one line


def test_refinement_turns_a_near_solution_into_an_exact_one():
    x_true, y, _ = _condition_with_branches(1)
    near = x_true + 0.01  # both lines shifted: still monotone and straight, RMSE far above zero
    assert validity(near, y, OFFICIAL)["rmse"].item() > 0.1

    class Fixed(torch.nn.Module):  # a "model" whose samples are always the near-solution
        config = Config(model="mlp", head="lines")

        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

    import cvae.sampling as sampling

    original = sampling.sample
    sampling.sample = lambda model, y, k, **_: near.unsqueeze(1).expand(-1, k, -1, -1)
    try:
        out = generate(Fixed(), y, OFFICIAL, samples=1, refine_steps=10)
    finally:
        sampling.sample = original
    checks = validity(out, y, OFFICIAL)
    assert checks["valid"].all()
    assert checks["rmse"].item() < 1e-4


def test_selection_never_returns_an_invalid_sample_when_valid_ones_exist():
    _, y, branch_set = _condition_with_branches(4)
    generator = torch.Generator().manual_seed(3)
    junk = lines_from_endpoints(uniform_starts(200, generator=generator)).unsqueeze(0)  # nearly all invalid
    exact = lines_from_endpoints(branch_set.float()).unsqueeze(0)  # every branch: all valid
    assert (rmse(branch_set, y.expand(len(branch_set), -1, -1), OFFICIAL) < 1e-4).all()
    # enough valid candidates: only valid ones, one per branch before any repeat
    many = torch.cat([junk[:, :100], exact.repeat(1, 10, 1, 1), junk[:, 100:]], dim=1)
    picked = select(many, y, OFFICIAL, samples=len(branch_set))
    assert validity(picked, y, OFFICIAL)["valid"].all()
    assert int(coverage(picked, y, OFFICIAL, branch_sets=[branch_set])["hits"][0]) == len(branch_set)
    # fewer valid candidates than samples: the valid ones repeat rather than invalid ones filling in
    few = torch.cat([junk[:, :50], exact[:, :2], junk[:, 50:]], dim=1)
    picked = select(few, y, OFFICIAL, samples=30)
    assert picked.shape[1] == 30
    assert validity(picked, y, OFFICIAL)["valid"].all()
    # the old behaviour stays available: invalid fill-ins, lowest RMSE first
    picked = select(few, y, OFFICIAL, samples=30, repeat_valid=False)
    assert validity(picked, y, OFFICIAL)["valid"][0, :2].all()


def test_quality_bench_quick_prints_its_result_lines(repo, capsys):
    """bench/quality.py --quick, through its main(argv) (loaded from its file, as the script runs)."""
    spec = importlib.util.spec_from_file_location("bench_quality", repo / "bench" / "quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    status = bench.main(["--quick"])
    done = capsys.readouterr()
    assert status == 0, done.err[-2000:]
    names = [line.split()[1] for line in done.out.splitlines() if line.startswith("RESULT ")]
    expected = ("network_gates_pass", "network_valid_frac", "network_coverage_norm", "check_k300_valid_frac")
    for name in (*expected, "refined_k30_coverage_norm", "refined_k300_coverage_norm"):
        assert name in names, done.out[-2000:]
    for line in done.out.splitlines():
        if line.startswith("RESULT "):
            parts = line.split()
            assert len(parts) == 6, line
            assert parts[3] == "goal", line
            assert parts[5] in ("met", "missed"), line
