"""Finalize a search: read its experiment folder, retrain the best configuration, validate it in every
regime, plot, and write model.pt and report.md/json (`twobirds-finalize`)."""

from .experiment import Experiment, FinalizeError, load_config_file, load_experiment, with_data
from .run import finalize, retrain

__all__ = ["Experiment", "FinalizeError", "finalize", "load_config_file", "load_experiment", "retrain", "with_data"]
