"""Official validation rows as the quality benches score them (issue 26): row blocks, regimes, one table row each.

Quality goals hold on rows 0-49 and on rows 1000-1499 of ../shared/twobirds/validation_dataset.pt (never
trained on; a check that nothing is tuned to the first 50), 30 samples per condition, the official functions;
without ../shared the same blocks of a synthetic official-like set stand in, and the label says so.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cvae.data import load_challenge, make_dataset
from cvae.lines import endpoints_from_lines
from cvae.metrics import branches, evaluate
from cvae.regimes import SUBMISSION_REFINE_STEPS, Regime, proposal_temperature, submission_regime

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "twobirds" / "validation_dataset.pt"
BLOCKS = "0-49,1000-1499"
SAMPLES = 30


def regimes_for(latent: str) -> tuple[Regime, Regime, Regime]:
    """The three regimes of issue 26's goals for a model of this latent family: the challenge's setting, the
    check as the main job writes it (no solver), the solver at K=30 with the family's proposal temperature."""
    check = submission_regime("check", latent)
    refined = Regime("refined", 30, SUBMISSION_REFINE_STEPS, temperature=proposal_temperature(latent))
    return Regime("network"), check, refined


REGIMES = regimes_for("categorical")


def row_blocks(text: str = BLOCKS) -> list[tuple[int, int]]:
    """'0-49,1000-1499' -> [(0, 49), (1000, 1499)] (inclusive)."""
    blocks = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        blocks.append((int(low), int(high or low)))
    return blocks


def official_rows(blocks, functions) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(label, x, y) per block: official rows, or synthetic official-like ones when ../shared/twobirds is absent
    (or the functions are not the official ones)."""
    if OFFICIAL.is_file() and functions.texts == type(functions)().texts:
        x, y = load_challenge(OFFICIAL)
        return [(f"rows {a}-{b}", x[a : b + 1], y[a : b + 1]) for a, b in blocks]
    x, y = make_dataset(max(b for _, b in blocks) + 1, functions, seed=2026)
    return [(f"synthetic rows {a}-{b}", x[a : b + 1], y[a : b + 1]) for a, b in blocks]


FRESH_SEED = 7_000_001  # apart from training (seed 0, 1, ...) and the search's validation (seed + 1,000,003)


def fresh_conditions(n: int, functions) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(label, x, y): n synthetic conditions drawn as the official ones are, never trained or searched on; a model
    is ranked on them without looking at the official rows."""
    x, y = make_dataset(n, functions, seed=FRESH_SEED)
    return [(f"{n} fresh synthetic", x, y)]


def distance_to_solutions(x: torch.Tensor, branch_sets) -> torch.Tensor:
    """Max-abs endpoint distance of each sample (N, S) to its condition's nearest exact solution."""
    ends = endpoints_from_lines(x.double())
    out = torch.full(ends.shape[:2], float("inf"), dtype=torch.float64)
    for i, b in enumerate(branch_sets):
        if len(b):
            out[i] = (ends[i, :, None, :] - b[None].to(ends)).abs().amax(-1).min(-1).values
    return out


def score(model, x_true, y, functions, regimes=None, seed: int = 0, branch_sets=None) -> list[dict]:
    """One row per regime: label, kind, gates_pass, valid_frac, overall_rmse, coverage_norm (cvae.metrics.evaluate,
    the numbers scripts/score.py prints) and, network only, the median distance to the nearest exact solution."""
    sets = branches(y, functions, x_true=x_true) if branch_sets is None else branch_sets
    rows = []
    for regime in regimes or regimes_for(model.config.latent):
        x = regime.generate(model, y, functions, SAMPLES, torch.Generator().manual_seed(seed))
        metrics = evaluate(x, y, functions, branch_sets=sets)
        row = {"regime": regime.label, "kind": regime.kind, "proposals": regime.proposals or SAMPLES}
        row.update({k: metrics[k] for k in ("gates_pass", "valid_frac", "overall_rmse", "coverage_norm")})
        if regime.kind == "network":
            row["median_distance"] = distance_to_solutions(x, sets).median().item()
        rows.append(row)
    return rows
