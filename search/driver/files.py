"""The files of an experiment folder `<storage>/<name>/`, named once: the search writes them; finalize,
the main job and the tests read them."""

SEARCH_CONFIG = "search_config.yaml"  # the search file as the user wrote it
RESULTS_CSV, RESULTS_PARQUET = "results.csv", "results.parquet"  # one row per trial
BEST_CONFIG = "best_config.yaml"  # the configuration finalize retrains
JOURNAL = "optuna.journal"  # the Optuna study (search/driver/study.py)
MANIFEST = "twobirds-trust.json"  # digests of Tune's state files, signed (search/driver/trust.py)
TUNER_STATE = "tuner.pkl"  # Tune's own, written once
SEARCHER_STATE = "searcher-state-*.pkl"  # Tune's snapshots of the searcher
FINAL = "final"  # finalize's output folder inside the experiment
MODEL, REPORT_JSON, REPORT_MD = "model.pt", "report.json", "report.md"  # in FINAL
