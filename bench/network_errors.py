"""Where a categorical model's network-only RMSE comes from, and which conditions its check cannot serve (issue 26).

The challenge's RMSE gate is judged over the whole result, so a few far-off samples can fail it while most are
valid. For each row block (official rows, never trained on; or `--synthetic` fresh conditions), 30 samples each:

- network only as the model samples: the samples by their own RMSE (share of samples, share of the squared error),
  the worst five conditions' share, and the samples by the prior mass of the component they came from;
- with `--min-p`: network only with the prior's tail cut (components under min-p x the likeliest one's mass never
  drawn), scored beside the model's own sampler;
- the conditions where network + check (K=300, as the main job draws it) finds no valid draw at all: those fail
  the check's gates, and only a solver can serve them.

    .venv/bin/python bench/network_errors.py --model runs/demo/final/model.pt
    .venv/bin/python bench/network_errors.py --model runs/demo/final/model.pt --synthetic 300 --min-p 0.1,0.2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import load, machine, table
from bench.official import BLOCKS, fresh_conditions, official_rows, row_blocks
from cvae.errors import run_command
from cvae.functions import FunctionPair
from cvae.inputs import InputError, check_model_file, number_at_least, positive_numbers
from cvae.lines import lines_from_endpoints
from cvae.metrics import branches, evaluate, validity
from cvae.regimes import SUBMISSION_PROPOSALS, Regime, submission_regime
from cvae.sampling import independent, sample, systematic
from cvae.train import load_model

SAMPLES = 30
RMSE_BINS = ((0.0, 0.1), (0.1, 0.15), (0.15, 0.25), (0.25, 0.5), (0.5, float("inf")))
MASS_BINS = ((0.0, 0.02), (0.02, 0.05), (0.05, 0.1), (0.1, 1.01))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a categorical model.pt (finalize's)")
    parser.add_argument("--rows", default=BLOCKS, help="official row blocks, e.g. 0-49,1000-1499")
    parser.add_argument(
        "--synthetic", type=number_at_least(int, 1), help="score on this many fresh synthetic conditions instead"
    )
    parser.add_argument("--min-p", type=positive_numbers, default=[], help="tail cuts to score, e.g. 0.1,0.2")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    return parser.parse_args(argv)


def own_draws(model, y: torch.Tensor, min_p: float = 0.0, seed: int = 0):
    """Network only as the model samples (its temperature and sampling), the prior's tail under min_p x its
    likeliest component's mass cut: (x (N, S, P, 2), each sample's component mass under the tempered prior)."""
    with torch.no_grad():
        ends, log_prior = model.eval()(y)
    probs = torch.softmax(log_prior / model.config.prior_temperature, dim=1)
    kept = torch.where(probs >= min_p * probs.amax(1, keepdim=True), probs, torch.zeros_like(probs))
    draw = systematic if model.config.prior_sampling == "systematic" else independent
    picks = draw(kept / kept.sum(1, keepdim=True), SAMPLES, torch.Generator().manual_seed(seed))
    chosen = ends.gather(1, picks.unsqueeze(-1).expand(-1, -1, 4))
    return lines_from_endpoints(chosen, y.shape[-2]), probs.gather(1, picks)


def share_rows(label: str, what: str, rmse: torch.Tensor, keys: torch.Tensor, bins) -> list[list]:
    """One row per bin of `keys`: its share of the samples, their valid fraction, their share of the squared error."""
    squares, rows = rmse.square(), []
    for low, high in bins:
        inside = (keys >= low) & (keys < high)
        valid = (rmse[inside] < 0.1).float().mean().item() if inside.any() else float("nan")
        share = (squares[inside].sum() / squares.sum()).item()
        rows.append([label, f"{what} {low:g}-{high:g}", f"{inside.float().mean():.3f}", f"{valid:.3f}", f"{share:.3f}"])
    return rows


def unserved_by_check(model, y, functions, branch_sets) -> list[str]:
    """The conditions of which not one of the check's K proposals is valid: index, branches, best proposal's RMSE."""
    check = submission_regime("check", model.config.latent)
    generator = torch.Generator().manual_seed(0)
    x = sample(model, y, SUBMISSION_PROPOSALS, generator, distinct=True, own_prior=False, spread=check.spread)
    per_sample = validity(x, y, functions)
    counts = [len(b) for b in branch_sets]
    return [
        f"condition {i} of the block: {counts[i]} branches, best of {SUBMISSION_PROPOSALS} proposals RMSE "
        f"{per_sample['rmse'][i].min():.3f}"
        for i in range(y.shape[0])
        if not per_sample["valid"][i].any()
    ]


def categorical_model(path: Path):
    """The model at path, refused in one line before any work unless it is a readable categorical model."""
    check_model_file(path)
    model = load_model(path, "cpu")
    if model.config.latent != "categorical":
        raise InputError(f"--model {path}: a {model.config.latent}-latent model; this bench reads a categorical one's")
    return model


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_command("network_errors", lambda: report(args))


def report(args) -> int:
    torch.set_num_threads(args.threads)
    model = categorical_model(args.model)
    print(machine(f"{args.threads} torch thread(s)"))
    functions = FunctionPair(model.config.functions)
    print(f"model: {args.model} (prior temperature {model.config.prior_temperature:g}, {model.config.prior_sampling})")
    sets = (
        fresh_conditions(args.synthetic, functions)
        if args.synthetic
        else official_rows(row_blocks(args.rows), functions)
    )
    shares, scores = [], []
    for label, x_true, y in sets:
        x, mass = own_draws(model, y)
        rmse = validity(x, y, functions)["rmse"]
        shares += share_rows(label, "sample RMSE", rmse, rmse, RMSE_BINS)
        shares += share_rows(label, "component mass", rmse, mass, MASS_BINS)
        worst = rmse.square().mean(1).sort(descending=True).values
        shares.append(
            [label, "the worst 5 conditions", f"{5 / len(worst):.3f}", "", f"{worst[:5].sum() / worst.sum():.3f}"]
        )
        branch_sets = branches(y, functions, x_true=x_true)
        for cut in [0.0, *args.min_p]:
            m = evaluate(x if cut == 0 else own_draws(model, y, cut)[0], y, functions, branch_sets=branch_sets)
            name = Regime("network").label + (f", prior tail under {cut:g} x the likeliest cut" if cut else "")
            scores.append(
                [label, name, "pass" if m["gates_pass"] else "FAIL"]
                + [f"{m[k]:.3f}" for k in ("valid_frac", "overall_rmse", "coverage_norm")]
            )
        for line in unserved_by_check(model, y, functions, branch_sets):
            print(f"{label}: network + check finds no valid draw: {line}")
    print("\nnetwork only, as the model samples: where the squared error is")
    table(["rows", "samples by", "share of samples", "valid", "share of squared error"], shares)
    print()
    table(["rows", "regime", "gates", "valid", "overall RMSE", "coverage_norm"], scores)
    print(load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
