"""Experiments side by side (`twobirds-compare runs/A runs/B ...`): how fast each search found its best, what it
found, and which parameters mattered to it.

Everything comes from files a search and finalize write, never from Tune's pickles:
- the Optuna journal (opened read-only): the experiment's own trials (those a --warm-start copied in ran
  elsewhere and are left out), the best so far after each trial against the trial count and against the seconds
  its trials ran (the union of their start-to-end spans, so the pause between a search and its --more is left
  out), and PED-ANOVA importances, as finalize draws them, from 4 complete trials on;
- results.csv and best_config.yaml: the search's pick (search.trials.best_trial) and its searched values;
- final/report.json where finalize ran: the final model's scores in every regime.

The best so far counts only trials that ran the full budget (Optuna's COMPLETE, what the search's pick ranks);
trials ASHA pruned count on the trial axis but never as a best, their score being a lower-fidelity one.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
import yaml
from optuna.exceptions import ExperimentalWarning
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
from optuna.trial import TrialState

from cvae.errors import UserError, first_line
from cvae.inputs import user_path

from ..driver.files import BEST_CONFIG, FINAL, JOURNAL, REPORT_JSON, RESULTS_CSV
from ..driver.study import StudyError, load_study, quiet_optuna
from ..driver.warm_start import FROM
from ..trials import best_trial, read_results
from .plots import write_png

PLOT, IMPORTANCES, MARKDOWN = "compare.png", "importances.png", "compare.md"
MIN_FOR_IMPORTANCES = 4  # PED-ANOVA's quantile needs a few complete trials (as finalize's search_importances.png)


class CompareError(UserError):
    """An experiment folder that cannot be compared, or experiments of different objectives; one line."""


def read_study(folder: Path):
    """The experiment's study, read-only; a damaged journal is one line."""
    try:
        return load_study(folder, read_only=True)
    except StudyError as err:
        raise CompareError(str(err)) from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise CompareError(f"{folder}/{JOURNAL}: not a readable Optuna journal ({first_line(err)})") from None


def own_trials(study) -> list:
    """The trials this experiment ran and finished (COMPLETE or PRUNED), in the order they ended."""
    states = (TrialState.COMPLETE, TrialState.PRUNED)
    trials = [t for t in study.get_trials(deepcopy=False, states=states) if FROM not in t.user_attrs]
    return sorted(trials, key=lambda t: t.datetime_complete or t.datetime_start)


def busy_seconds(trials) -> list[float]:
    """For each trial (in the order they ended), the seconds trials had been running when it ended."""
    spans = sorted((t.datetime_start.timestamp(), t.datetime_complete.timestamp()) for t in trials)
    merged: list[list[float]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])

    def until(moment: float) -> float:
        return sum(max(0.0, min(end, moment) - start) for start, end in merged)

    return [until(t.datetime_complete.timestamp()) for t in trials]


def curve(trials, maximize: bool) -> list[dict]:
    """The best so far after each trial: [{trial, seconds, best}] (best None until a trial ran the full budget)."""
    points, best = [], None
    for index, (trial, seconds) in enumerate(zip(trials, busy_seconds(trials)), start=1):
        value = trial.value if trial.state == TrialState.COMPLETE else None
        if value is not None and math.isfinite(value) and (best is None or (value > best) == maximize):
            best = value
        points.append({"trial": index, "seconds": round(seconds, 2), "best": best})
    return points


def importances(trials, maximize: bool) -> tuple[dict | None, str]:
    """PED-ANOVA importances of the parameters over the complete trials, or None and why not."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and math.isfinite(t.value)]
    if len(complete) < MIN_FOR_IMPORTANCES:
        return None, f"{len(complete)} complete trials; importances need at least {MIN_FOR_IMPORTANCES}"
    study = optuna.create_study(direction="maximize" if maximize else "minimize")  # in memory: own trials only
    study.add_trials(complete)
    quantile = max(0.1, min(0.5, 2 / len(complete)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)  # e.g. "quantiles select the same set of trials"
            found = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator(target_quantile=quantile))
    except (ValueError, RuntimeError, ZeroDivisionError) as err:
        return None, f"Optuna could not compute them: {first_line(err)}"
    if not found:
        return None, "no parameter is in every complete trial"
    return {k: round(float(v), 4) for k, v in found.items()}, f"PED-ANOVA over {len(complete)} complete trials"


def final_scores(folder: Path) -> tuple[dict | None, list[dict]]:
    """final/report.json's configuration and its scores in every regime ([] where finalize has not run)."""
    path = folder / FINAL / REPORT_JSON
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, []
    regimes = []
    for entry in report.get("regimes") or []:
        scores = entry.get("validation") or {}
        regimes.append(
            {"key": entry.get("key"), "label": entry.get("label")}
            | {k: scores.get(k) for k in ("gates_pass", "valid_frac", "coverage_norm", "score")}
        )
    return report.get("config"), regimes


def search_pick(folder: Path, mode: str) -> dict | None:
    """results.csv's pick (search.trials.best_trial): its trial id, run, score and how it ended."""
    try:
        table = read_results(folder / RESULTS_CSV)
    except (OSError, ValueError):
        return None
    row = best_trial(table, mode)
    if row is None:
        return None
    keys = [k for k in ("trial_id", "run", "score", "stop_reason") if k in row]
    return {k: (row[k].item() if hasattr(row[k], "item") else row[k]) for k in keys}


def best_values(folder: Path, space: list[str]) -> dict | None:
    """The searched values of best_config.yaml (the configuration finalize retrains)."""
    try:
        config = yaml.safe_load((folder / BEST_CONFIG).read_text())
    except (OSError, yaml.YAMLError):
        return None
    return {k: config[k] for k in space if isinstance(config, dict) and k in config}


def read_experiment(path) -> dict:
    """One experiment's entry of the comparison."""
    folder = user_path(path)
    if not folder.is_dir():
        raise CompareError(
            f"{path}: {'not a folder' if folder.exists() else 'no such folder'}; pass experiment "
            "folders <storage>/<name>"
        )
    study = read_study(folder)
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    mode = "max" if maximize else "min"
    trials = own_trials(study)
    points = curve(trials, maximize)
    found, note = importances(trials, maximize)
    config, regimes = final_scores(folder)
    space = sorted({k for t in trials for k in t.params})
    at = next((p for p in points if p["best"] is not None and p["best"] == points[-1]["best"]), None)
    return {
        "name": folder.name,
        "folder": str(folder),
        "objective": study.user_attrs.get("objective", "objective"),
        "mode": mode,
        "trials": len(trials),
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "warm_started": sum(FROM in t.user_attrs for t in study.get_trials(deepcopy=False)),
        "best": points[-1]["best"] if points else None,
        "best_at": at,
        "search_pick": search_pick(folder, mode),
        "best_config": best_values(folder, space) or ({k: config[k] for k in space if k in config} if config else None),
        "regimes": regimes,
        "importances": found,
        "importances_note": note,
        "curve": points,
    }


def compare(paths, out) -> dict:
    """Read the experiments at `paths`, write compare.png, importances.png and compare.md in `out`; the summary."""
    folders = [user_path(p).resolve() for p in paths]
    for path, folder in zip(paths, folders):
        if folders.count(folder) > 1:
            raise CompareError(f"{path}: named twice; name each experiment once")
    out = user_path(out)
    if out.exists() and not out.is_dir():
        raise CompareError(f"--out {out}: a file, not a folder; pass a folder")
    entries = [read_experiment(p) for p in paths]
    objectives = {(e["objective"], e["mode"]) for e in entries}
    if len(objectives) > 1:
        shown = ", ".join(f"{e['name']} {e['objective']} ({e['mode']})" for e in entries)
        raise CompareError(f"the experiments optimise different objectives ({shown}); compare experiments of one")
    out.mkdir(parents=True, exist_ok=True)
    quiet_optuna()  # the importances' in-memory studies: no INFO line each
    files = {"plot": plot_curves(entries, out / PLOT), "importances": plot_importances(entries, out / IMPORTANCES)}
    summary = {"out": str(out), "files": {k: v for k, v in files.items() if v}, "experiments": entries}
    summary["files"]["markdown"] = MARKDOWN
    (out / MARKDOWN).write_text(markdown(summary))
    return summary


# --- rendering ------------------------------------------------------------------------------------------------


def plot_curves(entries: list[dict], path: Path) -> str:
    """compare.png: the best so far against the seconds trials ran (left) and against the trials (right)."""
    figure, (by_time, by_trial) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for entry in entries:
        points = [p for p in entry["curve"] if p["best"] is not None]
        label = f"{entry['name']} ({entry['trials']} trials)"
        for ax, key in ((by_time, "seconds"), (by_trial, "trial")):
            ax.step([p[key] for p in points], [p["best"] for p in points], where="post", label=label)
    objective = entries[0]["objective"]
    by_time.set_xlabel("seconds of running trials (pauses between runs left out)")
    by_trial.set_xlabel("trials ended (complete or pruned)")
    by_time.set_ylabel(f"best {objective} so far (full-budget trials)")
    by_trial.legend(fontsize=8)
    for ax in (by_time, by_trial):
        ax.grid(alpha=0.3)
    figure.suptitle(f"Best {objective} so far ({entries[0]['mode']}imised) of each experiment's own trials")
    figure.tight_layout()
    name = write_png(figure, path)
    plt.close(figure)
    return name


def plot_importances(entries: list[dict], path: Path) -> str | None:
    """importances.png: each experiment's PED-ANOVA importances as bars side by side (None: no experiment has any)."""
    having = [e for e in entries if e["importances"]]
    if not having:
        return None
    params = sorted({k for e in having for k in e["importances"]})
    figure, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(params) * max(1, len(having) / 2)))
    height = 0.8 / len(having)
    for i, entry in enumerate(having):
        ax.barh(
            [p + i * height for p in range(len(params))],
            [entry["importances"].get(k, 0.0) for k in params],
            height=height,
            label=entry["name"],
        )
    ax.set_yticks([p + height * (len(having) - 1) / 2 for p in range(len(params))], params)
    ax.invert_yaxis()
    ax.set_xlabel("importance (PED-ANOVA, complete trials)")
    ax.legend(fontsize=8)
    figure.tight_layout()
    name = write_png(figure, path)
    plt.close(figure)
    return name


def _number(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "PASS" if value else "FAIL"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown(summary: dict) -> str:
    """compare.md: the experiments, their best configurations, their scores in every regime, importances."""
    entries = summary["experiments"]
    lines = ["# Experiments compared", "", f"![best so far]({PLOT})", ""]
    lines += ["| experiment | trials (complete) | warm-started | best | at trial | at seconds | search's pick |"]
    lines += ["|---|---|---|---|---|---|---|"]
    for e in entries:
        at, pick = e["best_at"] or {}, e["search_pick"] or {}
        picked = f"{pick.get('run') or pick.get('trial_id', '')} {_number(pick.get('score'))}" if pick else "n/a"
        lines.append(
            f"| {e['name']} | {e['trials']} ({e['complete']}) | {e['warm_started']} | {_number(e['best'])} | "
            f"{_number(at.get('trial'))} | {_number(at.get('seconds'))} | {picked} |"
        )
    keys = sorted({k for e in entries for k in (e["best_config"] or {})})
    lines += ["", "## Best configurations", "", "| key | " + " | ".join(e["name"] for e in entries) + " |"]
    lines += ["|---|" + "---|" * len(entries)]
    lines += [f"| {k} | " + " | ".join(_number((e["best_config"] or {}).get(k)) for e in entries) + " |" for k in keys]
    lines += ["", "## Final model in every regime (final/report.json)", ""]
    lines += ["| experiment | regime | gates | valid | coverage_norm | score |", "|---|---|---|---|---|---|"]
    for e in entries:
        if not e["regimes"]:
            lines.append(f"| {e['name']} | not finalized (run twobirds-finalize --experiment {e['folder']}) |||||")
        for r in e["regimes"]:
            lines.append(
                f"| {e['name']} | {r['label']} | {_number(r['gates_pass'])} | {_number(r['valid_frac'])} | "
                f"{_number(r['coverage_norm'])} | {_number(r['score'])} |"
            )
    params = sorted({k for e in entries for k in (e["importances"] or {})})
    lines += ["", "## Parameter importances", ""]
    if "importances" in summary["files"]:
        lines += [f"![importances]({IMPORTANCES})", ""]
    lines += ["| parameter | " + " | ".join(e["name"] for e in entries) + " |", "|---|" + "---|" * len(entries)]
    lines += [
        f"| {p} | " + " | ".join(_number((e["importances"] or {}).get(p)) for e in entries) + " |" for p in params
    ]
    lines += ["", *(f"- {e['name']}: {e['importances_note']}" for e in entries), ""]
    return "\n".join(lines)
