"""The files of an experiment folder `<storage>/<name>/`, named once: the search writes them; finalize,
the main job and the tests read them."""

import os
import secrets
from pathlib import Path

SEARCH_CONFIG = "search_config.yaml"  # the search file as the user wrote it
RESULTS_CSV, RESULTS_PARQUET = "results.csv", "results.parquet"  # one row per trial
BEST_CONFIG = "best_config.yaml"  # the configuration finalize retrains
JOURNAL = "optuna.journal"  # the Optuna study (search/driver/study.py)
WARM_START = "warm_start.json"  # what a --warm-start took from earlier experiments (search/driver/warm_start.py)
MANIFEST = "twobirds-trust.json"  # digests of Tune's state files, signed (search/driver/trust.py)
TUNER_STATE = "tuner.pkl"  # Tune's own, written once
SEARCHER_STATE = "searcher-state-*.pkl"  # Tune's snapshots of the searcher
FINAL = "final"  # finalize's output folder inside the experiment
MODEL, REPORT_JSON, REPORT_MD = "model.pt", "report.json", "report.md"  # in FINAL


def write_private(path, text: str) -> bool:
    """Create `path` readable by this user only (0600) with `text`, atomically: another process sees no file
    or the whole of it, never an empty one. False (and nothing written) when it exists already."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.link(tmp, path)  # fails if the name exists: the first writer wins
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
