"""The search file as validated pydantic models: sections, parameter kinds, the Optuna space. Imports no Ray."""

from .file import SearchSpec, load_search_config, parse_search_config
from .params import OptunaSpace
from .sections import SearchConfigError, SearchError

__all__ = ["OptunaSpace", "SearchConfigError", "SearchError", "SearchSpec", "load_search_config", "parse_search_config"]
