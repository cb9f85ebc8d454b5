"""The search's vocabulary, as pure functions: objectives, how a trial ended and its words, run names,
which result is better, and the trial a search picks.

Nothing here imports Ray or Optuna: the driver (search/driver/) and finalize (search/finalize/) both
speak it, and the console, TensorBoard, results.csv and report.md say the same thing in the same words.
"""

from __future__ import annotations

import math

OBJECTIVES = {
    # objective name -> (metric reported to Tune, mode)
    "score": ("val_score", "max"),
    "train_loss": ("loss", "min"),
    # the same score after refining each validation sample: ranks models as proposal distributions
    "refined_score": ("val_refined_score", "max"),
}
# What a diverged epoch reports for the objective: never NaN (ASHA never stops a NaN trial and
# Optuna marks it FAIL). For the maximised score (which lies in [0, 2]) -1 is below any real
# result yet finite, so ASHA's rung percentiles and TensorBoard's charts stay usable.
DIVERGED = {"val_score": -1.0, "val_refined_score": -1.0, "loss": float("inf")}
FINAL_STATUSES = ("TERMINATED", "ERROR")  # Tune's statuses of a trial that will not run again
# stop_reason -> (how a count of such trials reads, how one trial's end reads at `epoch`)
REASONS = {
    "finished": ("finished", "finished {epoch} epochs"),
    "asha": ("stopped by ASHA", "stopped by ASHA at epoch {epoch}"),
    "diverged": ("diverged", "diverged at epoch {epoch}"),
    "error": ("errored", "errored after {epoch} epochs"),
    "time_budget": ("ended by the time budget", "ended by the time budget at epoch {epoch}"),
    "interrupted": ("interrupted", "interrupted at epoch {epoch}"),
    # failure-aware pruning (the `failures:` section): the trial's own signals stopped it
    "collapsed": ("collapsed", "collapsed at epoch {epoch}"),
    "ignores_condition": ("ignored the condition", "ignores the condition at epoch {epoch}"),
}
ALWAYS_COUNTED = ("finished", "asha", "diverged", "error")  # shown even at 0
FAILURE = "failure"  # the result key (and Optuna user attr) naming the failure that stopped a trial
FAILURE_DETAIL = "failure_detail"  # the signal and threshold behind it, in words
CONDITION_GAP_SE = 3.0  # standard errors added to the condition gap before it is compared with its threshold
# a stop_reason that makes a trial no candidate: no real score (error, diverged), or a failed model
FAILED = {"error", "diverged", "collapsed", "ignores_condition"}
UNFINISHED = {"error", "errored", "failed", "running", "pending", "paused"}  # Tune statuses without a score
# Parameters a run name shows first (when searched), then the others in the space's order.
KEY_PARAMS = ("model", "latent", "head", "lr", "beta", "latent_dim", "components", "hidden", "optimizer", "wy")
NAME_PARAMS = 3
SHORT = {"optimizer": "opt", "latent_dim": "z", "hidden": "h", "batch_size": "bs", "weight_decay": "wd"}


def is_better(value, best, mode: str) -> bool:
    """Whether `value` beats `best` (None: nothing yet) under `mode`; a non-finite value never does."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return best is None or (value > best if mode == "max" else value < best)


def stopped_early(result: dict | None, max_t: int) -> bool:
    """Whether a trial's last result is one the scheduler cut short (not finished, not diverged).

    Tune marks the result that triggered a scheduler STOP with done=True; ASHA stops at max_t
    too, so only a stop before the full budget counts as early.
    """
    if not result or not result.get("done") or result.get("diverged"):
        return False
    epoch = result.get("epoch", result.get("training_iteration"))
    return epoch is not None and epoch < max_t


def stop_reason(status: str, last: dict, max_t: int, budget_spent: bool = False) -> str:
    """finished | asha | diverged | error | time_budget, or interrupted while the search is unfinished.

    budget_spent: the search's time budget ran out, so a trial still pending will never run (time_budget)."""
    if status == "ERROR":
        return "error"
    if status not in FINAL_STATUSES:
        return "time_budget" if budget_spent else "interrupted"  # Ctrl-C: --resume continues it
    if last.get("diverged"):
        return "diverged"
    if last.get(FAILURE) in REASONS:
        return last[FAILURE]
    if (last.get("epoch") or 0) >= max_t:
        return "finished"
    if stopped_early(last, max_t):
        return "asha"
    return "time_budget"


def ended(status: str, last: dict, max_t: int) -> str:
    """How a trial ended, in words: 'finished 30 epochs', 'collapsed at epoch 2 (effective components 1.1 < 1.5)'."""
    words = REASONS[stop_reason(status, last, max_t)][1].format(epoch=int(last.get("epoch") or 0))
    return f"{words} ({last[FAILURE_DETAIL]})" if last.get(FAILURE) and last.get(FAILURE_DETAIL) else words


def failure(row: dict, limits: dict | None, wy_delay: int = 0, metric: str = "val_score") -> tuple[str, str] | None:
    """(stop_reason, detail) when an epoch's failure signals (cvae/signals.py) cross `limits`, else None.

    limits: the `failures:` section's values (search/spec/sections.py); None or prune false: never.
    A non-finite loss is `diverged` at once; the signals are judged from limits["from_epoch"] on and only once
    the trial's whole loss applies (after its `wy_delay` epochs): until then neither the y-term nor the validity
    term acts, and they can still spread a collapsed prior (docs/search.md, failure-aware pruning). The condition
    gap waits limits["condition_epochs"] epochs of the whole loss: an untrained model ignores y too.
    A threshold of 0 (1 for min_components) switches its check off. The condition gap is the one of the
    objective's samples (`metric`): network only, or refined for refined_score.
    """
    if not limits or not limits.get("prune"):
        return None
    if row.get("diverged") or not math.isfinite(row.get("loss", math.nan)):
        return "diverged", "non-finite loss"
    epoch = int(row.get("epoch") or 0)
    if epoch < max(limits["from_epoch"], wy_delay + 1):
        return None
    prefix = "val_refined_" if metric == "val_refined_score" else "val_"
    gap, se = row.get(f"{prefix}condition_gap", math.nan), row.get(f"{prefix}condition_gap_se", math.nan)
    if epoch < wy_delay + limits["condition_epochs"]:  # a model needs a few epochs to learn to use y at all
        gap = math.nan
    checks = (
        ("collapsed", row.get("val_prior_components"), "min_components", "effective components"),
        ("collapsed", row.get("val_kl_max_dim"), "min_kl_per_dim", "largest KL of a latent dimension"),
        # the gap's upper bound (3 standard errors): a gap measured on a few conditions stops nothing by chance
        ("ignores_condition", gap + CONDITION_GAP_SE * se, "min_condition_gap", "own-condition gap + 3 s.e."),
    )
    for reason, value, limit, words in checks:
        if isinstance(value, (int, float)) and math.isfinite(value) and value < limits[limit]:
            return reason, f"{words} {value:.3g} < {limits[limit]:g}"
    return None


def trial_counts(results) -> dict | None:
    """Trials of a results table by stop_reason, with the epochs ASHA stopped them at."""
    if results is None or "stop_reason" not in results:
        return None
    reasons = results["stop_reason"].astype(str)
    counts = {"total": len(results), **{r: int((reasons == r).sum()) for r in ALWAYS_COUNTED}}
    for other in sorted(set(reasons) - set(ALWAYS_COUNTED)):
        counts[other] = int((reasons == other).sum())
    if counts["asha"] and "epochs" in results:
        epochs = results.loc[reasons == "asha", "epochs"].astype(int).value_counts().sort_index()
        counts["asha_at_epoch"] = {str(int(e)): int(n) for e, n in epochs.items()}
    return counts


def counts_text(counts: dict | None) -> str:
    """E.g. '2 finished, 4 stopped by ASHA (3 at epoch 1, 1 at epoch 2), 0 diverged, 0 errored'."""
    if not counts or not counts.get("total"):
        return "no trials"
    parts = []
    for reason, (words, _) in REASONS.items():
        if reason not in counts:
            continue
        text = f"{counts[reason]} {words}"
        if reason == "asha" and counts.get("asha_at_epoch"):
            text += " (" + ", ".join(f"{n} at epoch {e}" for e, n in counts["asha_at_epoch"].items()) + ")"
        parts.append(text)
    return ", ".join(parts)


# results.csv's columns that are names, never numbers: pandas would read a Ray trial id of digits around an "e"
# ("4967e050") as the float 4.967e53, an all-digit one as an integer, and neither would match the study's trial
NAME_COLUMNS = {"trial_id": str, "run": str, "node": str}


def read_results(path):
    """A search's results.csv as a DataFrame, its name columns as text."""
    import pandas as pd

    return pd.read_csv(path, dtype=NAME_COLUMNS)


def finished_trials(results):
    """Rows of a results table that count as finished trials: a finite score, neither failed nor diverged.

    A trial ASHA stopped early or the time budget ended still counts (it was scored); a
    diverged one does not (its score is a placeholder). The score is the `score` column,
    the objective's last value, which the search ranks by.
    """
    import pandas as pd

    if "score" not in results:
        return results.iloc[0:0]
    scores = pd.to_numeric(results["score"], errors="coerce")
    keep = scores.apply(math.isfinite)
    for column, bad in (("status", UNFINISHED), ("stop_reason", FAILED)):
        if column in results:
            keep &= ~results[column].astype(str).str.lower().isin(bad)
    return results[keep]


# finalize --pick: which of the re-run top configurations to retrain (search/finalize/choice.py)
PICKS = {
    "lcb": "the best pessimistic end of the interval (the lower bound of a maximised objective)",
    "mean": "the best re-run mean",
    "best": "the search's best trial, as finalize does without re-runs",
}


def ranked_trials(results, mode: str):
    """Finished trials in the order the search prefers them: those that ran the full budget (ASHA's
    survivors) best first, then the others best first. The search, finalize and its re-runs use this rule."""
    import pandas as pd

    finished = finished_trials(results)
    if "stop_reason" in finished:
        full = finished["stop_reason"].astype(str) == "finished"
        pools = [finished[full], finished[~full]]
    else:
        pools = [finished]
    ordered = [p.assign(_s=pd.to_numeric(p["score"], errors="coerce")) for p in pools]
    ordered = [p.sort_values("_s", ascending=mode == "min", kind="stable").drop(columns="_s") for p in ordered]
    return pd.concat(ordered) if ordered else finished


def best_trial(results, mode: str):
    """The search's pick: the first of `ranked_trials`; None when no trial finished."""
    ranked = ranked_trials(results, mode)
    return None if ranked.empty else ranked.iloc[0]


def objective_regime(metric: str, config, samples: int):
    """The regime (cvae.regimes) the objective measures, for `samples` samples per condition."""
    from cvae.regimes import Regime

    if metric == "val_refined_score" and getattr(config, "val_refine_steps", 0) > 0:
        return Regime("refined", proposals=samples, refine_steps=config.val_refine_steps)
    return Regime("network")


def _value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.1e}" if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4) else f"{value:.3g}"
    return str(value)


def run_name(number, config: dict, trial_id: str = "", params=None) -> str:
    """`t<number>_<key params>_<trial id>`, e.g. `t03_mlp_lr=2.3e-03_beta=0.52_4f1c2a9b`: a trial's folder,
    its TensorBoard run and its console name."""
    keys = [k for k in KEY_PARAMS if k in config] + [k for k in config if k not in KEY_PARAMS]
    if params is not None:
        keys = [k for k in keys if k in params]
    parts = [f"t{int(number):02d}" if str(number).isdigit() else "t"]
    for key in keys[:NAME_PARAMS]:
        value = config[key]
        parts.append(str(value) if isinstance(value, str) else f"{SHORT.get(key, key)}={_value(value)}")
    if trial_id:
        parts.append(trial_id)
    name = "_".join(parts)
    return "".join(c if c.isalnum() or c in "._=-+" else "-" for c in name)


def trial_number(trial) -> str:
    """Tune's 1-based count of the trial (the start of its experiment_tag)."""
    return (getattr(trial, "experiment_tag", "") or "").split("_", 1)[0]


def trial_name(trial) -> str:
    """Tune's trial_name_creator / trial_dirname_creator."""
    return run_name(trial_number(trial), dict(trial.config or {}), trial.trial_id)
