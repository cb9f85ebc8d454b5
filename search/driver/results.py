"""After a search: one row per trial (CSV + Parquet), the best configuration as YAML, a summary.

Built from the experiment folder itself (Tune's experiment state and each trial's progress),
so it works the same after a fresh run, a resumed one, or later on a copy of the folder.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import yaml
from ray.tune import ExperimentAnalysis

from cvae.config import Config

from ..spec import SearchSpec
from ..trials import FINAL_STATUSES, best_trial, counts_text, stop_reason, trial_counts
from .compat import checked_state_reads, restored_search, trial_error_text
from .files import SEARCHER_STATE
from .searcher import PruningOptunaSearch
from .storage import Storage
from .trust import signed_reads

LAST_METRICS = (
    "val_score",
    "val_gates_pass",
    "val_valid_frac",
    "val_coverage",
    "val_coverage_norm",
    "val_overall_rmse",
    "val_diversity",
    "val_refined_score",
    "val_refined_gates_pass",
    "val_refined_valid_frac",
    "val_refined_coverage_norm",
    "val_refined_overall_rmse",
    "loss",
    "kld",
    "x_loss",
    "y_loss",
)


def _best(history: pd.DataFrame | None, metric: str, mode: str) -> tuple[float, int]:
    if history is None or metric not in history or history[metric].dropna().empty:
        return math.nan, 0
    values = history[metric].astype(float)
    index = values.idxmax() if mode == "max" else values.idxmin()
    epoch = history["epoch"][index] if "epoch" in history else index + 1
    return float(values[index]), int(epoch)


def _config_columns(config: dict, spec: SearchSpec) -> dict:
    searched = {k: v for k, v in config.items() if k in Config.model_fields}
    values = Config.from_dict({**spec.base_config(), **searched}).to_dict()
    values["functions"] = "; ".join(values["functions"])  # one text cell, the same in CSV and Parquet
    return {f"config/{k}": v for k, v in values.items()}


def build_table(experiment_path: str, spec: SearchSpec, storage_filesystem=None, budget_spent=False) -> pd.DataFrame:
    """One row per trial of the experiment at `experiment_path` (local path or URI); budget_spent: the time
    budget ended the search, and trials that never ran are counted as ended by it."""
    analysis = ExperimentAnalysis(experiment_path, storage_filesystem=storage_filesystem)
    histories = analysis.trial_dataframes
    rows = []
    for trial in analysis.trials:
        last = dict(trial.last_result or {})
        history = histories.get(trial.trial_id)
        best, best_epoch = _best(history, spec.metric, spec.mode)
        error = ""
        if trial.status == "ERROR":
            text = trial_error_text(trial).strip().splitlines()
            error = text[-1] if text else "the trial raised an error (see error.txt in its folder)"
        row = {
            "trial_id": trial.trial_id,
            "run": Path(str(getattr(trial, "path", "") or "")).name,  # the trial folder = its TensorBoard run
            "status": trial.status,
            "stop_reason": stop_reason(trial.status, last, spec.max_t, budget_spent),
            "epochs": int(last.get("epoch") or 0),
            "node": last.get("node") or last.get("node_ip") or "",
            "node_id": last.get("node_id") or "",
            "score": float(last.get(spec.metric, math.nan)),
            "best_score": best,
            "best_epoch": best_epoch,
            "metric": spec.metric,
            **{m: float(last.get(m, math.nan)) for m in LAST_METRICS if m != spec.metric},
            "time_total_s": float(last.get("time_total_s", math.nan)),
            "error": error,
            **_config_columns(trial.config, spec),
        }
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        ascending = spec.mode == "min"
        table = table.sort_values(["score"], ascending=ascending, na_position="last").reset_index(drop=True)
    return table


def best_row(table: pd.DataFrame, spec: SearchSpec) -> pd.Series | None:
    """The search's best trial (`search.trials.best_trial`: the rule finalize uses too)."""
    return best_trial(table, spec.mode)


def best_config(row: pd.Series, spec: SearchSpec) -> dict:
    """Fixed values + the trial's searched values, epochs = the full budget: what finalize retrains."""
    searched = {key: row[f"config/{key}"] for key in spec.space}
    searched = {k: (v.item() if hasattr(v, "item") else v) for k, v in searched.items()}  # numpy -> Python
    return Config.from_dict({**spec.base_config(), **searched}).to_dict()


def best_config_yaml(row: pd.Series, spec: SearchSpec, experiment: str) -> str:
    header = (
        f"# Best configuration of experiment {experiment}: trial {row['trial_id']}, "
        f"{spec.metric}={row['score']:.4f} after {row['epochs']} epochs ({row['stop_reason']}).\n"
        "# Load with cvae.config.Config.from_dict(yaml.safe_load(...)).\n"
    )
    return header + yaml.safe_dump(best_config(row, spec), sort_keys=False)


def table_bytes(table: pd.DataFrame) -> tuple[bytes, bytes]:
    """(CSV, Parquet) bytes of the table."""
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    return table.to_csv(index=False).encode(), buffer.getvalue()


def summary(table: pd.DataFrame, spec: SearchSpec, experiment: str, best: pd.Series | None) -> str:
    """One screen: counts by stop reason, the top trials, the best configuration, where to look next."""
    lines = [f"Search {experiment}: {len(table)} trials, objective {spec.metric} ({spec.mode}imise)"]
    if table.empty:
        return "\n".join([*lines, "no trials ran"])
    lines.append("ended: " + counts_text(trial_counts(table)))
    lines.append(f"nodes: {', '.join(sorted(set(map(str, table['node'])) - {''})) or '-'}")
    # The objective's own parts: the refined ones for refined_score, the network-only ones otherwise.
    prefix = "val_refined_" if spec.metric == "val_refined_score" else "val_"
    columns = ["trial_id", "stop_reason", "epochs", "score", "best_score"]
    columns += [f"{prefix}valid_frac", f"{prefix}coverage_norm"]
    if spec.metric == "loss":
        columns += ["val_score"]
    columns += [f"config/{k}" for k in spec.space]
    shown = table[[c for c in columns if c in table]].head(8)
    shown.columns = [c.removeprefix("config/") for c in shown.columns]
    lines.append(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if best is None:
        lines.append("no trial reported a finite objective: no best configuration")
    else:
        values = ", ".join(f"{k}={best[f'config/{k}']}" for k in spec.space)
        lines.append(f"best: trial {best['trial_id']} {spec.metric}={best['score']:.4f} ({best['stop_reason']})")
        lines.append(f"      {values}")
    return "\n".join(lines)


def _restore_search(experiment_dir):
    """Tune's search generator as last saved in a (local) experiment folder."""
    folder = Path(experiment_dir)
    if not list(folder.glob(SEARCHER_STATE)):
        raise FileNotFoundError(f"{folder}: no {SEARCHER_STATE}; is it a search's experiment folder?")
    with checked_state_reads(signed_reads(Storage(folder.parent), folder.name, action="reading")):
        return restored_search(str(folder), PruningOptunaSearch(max_t=1))  # a pickle: only our own is loaded


def trials_left(table: pd.DataFrame, experiment_dir=None) -> int:
    """Trials an interrupted search still owes: unfinished ones plus those never created.

    A search that ran out of time budget is finished: its trials' stop_reason says so.
    """
    if not table.empty and (table["stop_reason"] == "time_budget").any():
        return 0
    left = int((~table["status"].isin(FINAL_STATUSES)).sum()) if not table.empty else 0
    if experiment_dir is not None:
        generator = _restore_search(experiment_dir)
        if not generator.is_finished():
            left += max(0, generator.total_samples - len(table))
    return left
