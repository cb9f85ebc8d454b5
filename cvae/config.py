"""One flat configuration for model, loss and training: what a search varies and finalize retrains."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import UserError
from .functions import OFFICIAL_FUNCTIONS, FunctionPair

CHOICES = {
    "latent": ("gaussian", "categorical"),
    "model": ("conv", "mlp"),
    "head": ("points", "lines"),
    "recon": ("huber", "l1", "mse"),
    "optimizer": ("Adam", "RMSprop", "SGD"),
    "noise": ("prior", "encoder"),
    "lr_schedule": ("constant", "cosine"),
}


class ConfigError(UserError):
    """A configuration value or key that cannot be used."""


@dataclass
class Config:
    functions: tuple = OFFICIAL_FUNCTIONS
    # latent: a Gaussian z (the original), or a component c of `components` with a learned prior p(c | y)
    latent: str = "gaussian"
    components: int = 48  # categorical: line pairs the decoder proposes per condition
    sigma: float = 0.01  # categorical: std of each component's Gaussian in endpoint space (its precision)
    sigma_start: float = 0.0  # categorical: > sigma anneals geometrically from this to sigma ...
    sigma_anneal: int = 0  # ... over this many epochs (wide early, so every component finds a solution)
    wv: float = 0.0  # categorical: weight of the cross-entropy pulling p(c | y) to components that reproduce y
    # model (categorical: always an MLP on y with a lines head)
    model: str = "conv"  # the original conv encoder/decoder, or an MLP
    head: str = "points"  # 50x2 points as the original, or 4 monotone line endpoints
    latent_dim: int = 8
    hidden: int = 128  # width of the fully connected layers
    depth: int = 2  # hidden layers of the MLP encoder and decoder
    encoder_sees_y: bool = False  # the original encoder saw x alone
    # loss: beta*KLD + wx*recon(x) + wy*mse(f(x_hat), y)
    beta: float = 1.0
    wx: float = 1.0
    wy: float = 1.0
    recon: str = "huber"
    free_bits: float = 0.0  # per-latent-dimension KLD floor against posterior collapse
    beta_warmup: int = 0  # epochs over which beta ramps up linearly from 0
    wy_delay: int = 0  # epochs trained without the y-term (and wv) before they apply
    # optimisation
    optimizer: str = "Adam"
    lr: float = 1e-3
    lr_schedule: str = "constant"  # or "cosine": decays to 0 over `epochs`, for the precision a solution needs
    weight_decay: float = 0.0
    batch_size: int = 256
    epochs: int = 20
    seed: int = 0
    # sampling used for validation
    noise: str = "prior"  # z ~ N(0, I), or noise pushed through the encoder as the original did (gaussian)
    val_samples: int = 30
    val_refine_steps: int = 0  # > 0: also score the samples after this many LM refinement steps

    def __post_init__(self):
        self.functions = tuple(self.functions)
        FunctionPair(self.functions)  # raises a FunctionSyntaxError naming the bad token
        for key, allowed in CHOICES.items():
            value = getattr(self, key)
            match = [a for a in allowed if str(value).lower() == a.lower()]
            if not match:
                raise ConfigError(f"config {key}={value!r} is not one of {', '.join(allowed)}")
            setattr(self, key, match[0])
        for key in ("latent_dim", "hidden", "depth", "batch_size", "epochs", "val_samples", "components"):
            value = getattr(self, key)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ConfigError(f"config {key}={value!r} must be a positive integer")
            setattr(self, key, int(value))
        steps = self.val_refine_steps
        if isinstance(steps, bool) or int(steps) != steps or steps < 0:
            raise ConfigError(f"config val_refine_steps={steps!r} must be an integer >= 0")
        self.val_refine_steps = int(steps)
        for key in ("lr", "sigma"):
            if not float(getattr(self, key)) > 0:
                raise ConfigError(f"config {key}={getattr(self, key)!r} must be > 0")
        nonnegative = ("beta", "wx", "wy", "weight_decay", "free_bits", "beta_warmup", "wy_delay", "wv")
        for key in (*nonnegative, "sigma_start", "sigma_anneal"):
            if not float(getattr(self, key)) >= 0:
                raise ConfigError(f"config {key}={getattr(self, key)!r} must be >= 0")
        if self.latent == "categorical":
            self.model, self.head = "mlp", "lines"  # what the categorical family is built of

    @classmethod
    def from_dict(cls, values: dict) -> Config:
        """Build from a plain dict (YAML, a search trial); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
        return cls(**values)

    def to_dict(self) -> dict:
        """Plain Python values only, so checkpoints load with weights_only=True."""
        values = dataclasses.asdict(self)
        values["functions"] = list(self.functions)
        return values

    def replace(self, **changes) -> Config:
        return dataclasses.replace(self, **changes)
