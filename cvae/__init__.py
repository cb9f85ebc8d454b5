"""A conditional VAE for the Two Birds challenge: the model library, readable in one sitting.

    from cvae import Config, DataSpec, Regime, Trainer, assess, load_model

Configuration (`Config`, `DataSpec`), condition functions (`FunctionPair`), training (`Trainer`, model
files read by `load_model`), the regimes samples are generated in (`Regime`), and their judgement
(`assess`: the challenge's gates, validity, coverage). Nothing here knows about Ray or Optuna.
"""

from .config import Config
from .data import DataSpec, load_challenge
from .errors import UserError
from .functions import FunctionPair
from .regimes import Regime
from .submission import assess
from .train import Trainer, load_model

__all__ = [
    "Config",
    "DataSpec",
    "FunctionPair",
    "Regime",
    "Trainer",
    "UserError",
    "assess",
    "load_challenge",
    "load_model",
]
