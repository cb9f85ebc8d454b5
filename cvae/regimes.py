"""The regimes a generator is judged in, always reported apart, and the no-learning baseline.

- network: S draws from the model as they are (the challenge's setting);
- check: K draws, those whose recomputed y is valid kept and S spread-out ones selected; no solver;
- refined: K proposals from the model, Levenberg-Marquardt on each, S selected;
- uniform: K uniformly random monotone lines through the same solver and selection (no learning).

A number without its regime is not worth showing: every report names it with `Regime.label`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import UserError
from .functions import FunctionPair
from .metrics import evaluate
from .sampling import generate

KINDS = {
    "network": "network only",
    "check": "network + check",
    "refined": "network + refinement",
    "uniform": "uniform + refinement",
}


# The submissions' settings, named once (the main job, generate's defaults and finalize's report): K proposals
# for check and refined, Levenberg-Marquardt steps, and a Gaussian latent's proposal temperature (docs/quality.md;
# a categorical latent's proposals come from its components' own Gaussians, at 1).
SUBMISSION_PROPOSALS, SUBMISSION_REFINE_STEPS, GAUSSIAN_TEMPERATURE = 300, 20, 2.0
# A categorical check's proposals beyond its C components (each component's line pair once): the prior as trained
# (T = 1) picks a component and Gaussian noise of this std, in endpoint units, moves it. With no solver to pull a
# draw in, the noise is sized to the gate's precision (about 0.002 at RMSE 0.1), not to the training sigma
# (docs/quality.md, issue 26: chosen on synthetic conditions).
CATEGORICAL_CHECK_SPREAD = 0.004


def proposal_temperature(latent: str | None) -> float:
    """The refinement proposals' temperature for a model of this latent family."""
    return 1.0 if latent == "categorical" else GAUSSIAN_TEMPERATURE


def submission_regime(kind: str, latent: str | None = None, samples: int = 30) -> Regime:
    """The check or refined submission's regime, as the main job writes it."""
    k = max(SUBMISSION_PROPOSALS, samples)
    if kind == "check":
        return Regime("check", proposals=k, spread=CATEGORICAL_CHECK_SPREAD if latent == "categorical" else None)
    return Regime(
        "refined", proposals=k, refine_steps=SUBMISSION_REFINE_STEPS, temperature=proposal_temperature(latent)
    )


class RegimeError(UserError):
    """A regime that cannot be run (unknown kind, K below S, no model)."""


@dataclass(frozen=True)
class Regime:
    kind: str = "network"
    proposals: int | None = None  # K; None: as many as samples
    refine_steps: int = 0
    temperature: float = 1.0
    spread: float | None = None  # a categorical model's extra proposals: noise std in endpoint units

    def __post_init__(self):
        if self.kind not in KINDS:
            raise RegimeError(f"regime {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind in ("refined", "uniform") and self.refine_steps < 1:
            raise RegimeError(f"regime {self.kind} needs refine_steps >= 1")
        if self.kind in ("network", "check") and self.refine_steps:
            raise RegimeError(f"regime {self.kind} uses no solver; refine_steps must be 0")
        if self.spread is not None and not 0 <= self.spread < float("inf"):
            raise RegimeError(f"regime {self.kind}: spread must be a finite number >= 0, got {self.spread}")

    @property
    def label(self) -> str:
        """E.g. 'network + refinement (K=300, 20 LM steps)'."""
        parts = []
        if self.kind != "network" and self.proposals:
            parts.append(f"K={self.proposals}")
        if self.refine_steps:
            parts.append(f"{self.refine_steps} LM steps")
        if self.temperature != 1.0:
            parts.append(f"T={self.temperature:g}")
        if self.spread is not None:
            parts.append(f"spread {self.spread:g}")
        return KINDS[self.kind] + (f" ({', '.join(parts)})" if parts else "")

    def generate(self, model, y: torch.Tensor, functions: FunctionPair, samples: int = 30, generator=None):
        """x (N, samples, P, 2) for conditions y (N, P, 2) in this regime."""
        k = self.proposals or samples
        if k < samples:
            raise RegimeError(f"{self.label}: cannot select {samples} samples from {k} proposals")
        if self.kind == "network" and k != samples:
            raise RegimeError("network only draws exactly the samples it returns; use kind 'check' to select")
        if model is None and self.kind != "uniform":
            raise RegimeError(f"{self.label} needs a model")
        return generate(
            model,
            y,
            functions,
            samples=samples,
            proposals=k,
            refine_steps=self.refine_steps,
            proposals_from="uniform" if self.kind == "uniform" else "model",
            generator=generator,
            noise=model.config.noise if model is not None else "prior",
            temperature=self.temperature,
            spread=self.spread,
        )


def evaluate_regimes(
    model, y, functions: FunctionPair, regimes, samples: int = 30, seed: int = 0, branch_sets=None
) -> list[tuple[Regime, dict]]:
    """[(regime, cvae.metrics.evaluate's metrics)] for each regime, on the same conditions."""
    out = []
    for regime in regimes:
        device = next(model.parameters()).device if model is not None else y.device
        generator = torch.Generator(device).manual_seed(seed)
        x = regime.generate(model, y.to(device), functions, samples, generator)
        out.append((regime, evaluate(x.cpu(), y.cpu(), functions, branch_sets=branch_sets)))
    return out
