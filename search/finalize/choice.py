"""How sure is the choice: the search's top configurations re-run with fresh seeds, an interval on each one's
mean, the configuration to retrain, and whether the retrained model landed where its re-runs predicted.

Best-of-N on a noisy score is optimistic: the search's best trial is partly luck. Re-running the top K
configurations (`search.trials.ranked_trials`) with R seeds the search never used, at the search's fidelity
(its data and max_t epochs), estimates each one's mean free of that selection; a Student-t interval on the
mean says how sure it is; `lcb` retrains the configuration whose pessimistic bound is best instead of the
luckiest one (`best`, finalize's rule without re-runs).

The re-runs are sequential, in this process, with `cvae.train.Trainer`: finalize stays free of Ray (no
start-up, nothing to clean up), each run is seeded and deterministic, an error surfaces as itself, and on a
laptop's cores one run already keeps them busy (torch's threads), so running two at once would gain little.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

from cvae.config import Config
from cvae.scorecard import fmt
from cvae.submission import plain
from cvae.train import Trainer

from ..trials import DIVERGED, OBJECTIVES, PICKS, ranked_trials
from .experiment import Experiment, FinalizeError

CONFIDENCE = 0.90
INTERVAL = f"Student-t {CONFIDENCE:.0%} on the mean of the re-runs"
PREDICTION = f"Student-t {CONFIDENCE:.0%} prediction interval for one new run"


@dataclass
class Candidate:
    """One of the search's top configurations and what its re-runs scored."""

    trial_id: str
    rank: int
    search_score: float
    search_epochs: int
    stop_reason: str
    config: Config
    scores: list[float]


def candidates(experiment: Experiment, top_k: int) -> list[Candidate]:
    """The first `top_k` of the search's ranking, each with the configuration its trial trained."""
    ranked = ranked_trials(experiment.results, experiment.mode).head(top_k)
    out = []
    for rank, (_, row) in enumerate(ranked.iterrows(), start=1):
        values = {k.removeprefix("config/"): row[k] for k in row.index if str(k).startswith("config/")}
        values = {k: (v.item() if hasattr(v, "item") else v) for k, v in values.items() if k != "functions"}
        config = Config.from_dict({**values, "functions": list(experiment.config.functions)})
        epochs, reason = int(row.get("epochs", config.epochs)), str(row.get("stop_reason", ""))
        out.append(Candidate(str(row["trial_id"]), rank, float(row["score"]), epochs, reason, config, []))
    return out


def interval(scores: list[float], confidence: float = CONFIDENCE) -> dict:
    """Mean, standard deviation, the Student-t interval on the mean and the prediction interval for one new run
    (NaN bounds with fewer than two finite scores)."""
    from scipy.stats import t

    finite = [s for s in scores if math.isfinite(s)]
    mean = statistics.fmean(finite) if finite else math.nan
    if len(finite) < len(scores) or len(finite) < 2:  # a diverged run: nothing to bound
        std = statistics.stdev(finite) if len(finite) >= 2 else math.nan
        return {"mean": mean, "std": std, "ci": [math.nan, math.nan], "prediction": [math.nan, math.nan]}
    n, std = len(finite), statistics.stdev(finite)
    quantile = float(t.ppf(0.5 + confidence / 2, n - 1))
    half, wide = quantile * std / math.sqrt(n), quantile * std * math.sqrt(1 + 1 / n)
    return {"mean": mean, "std": std, "ci": [mean - half, mean + half], "prediction": [mean - wide, mean + wide]}


def pick(stats: list[dict], rule: str, mode: str) -> int:
    """Index of the candidate `rule` retrains; stats in ranking order (the first is the search's best)."""
    if rule == "best":
        return 0
    sign = 1 if mode == "max" else -1

    def key(i):
        value = stats[i]["mean"] if rule == "mean" else stats[i]["ci"][0 if mode == "max" else 1]
        return sign * value if math.isfinite(value) else -math.inf

    return max(range(len(stats)), key=lambda i: (key(i), -i))  # a tie goes to the search's order


def rerun(config: Config, train, val, metric: str, device=None) -> float:
    """The objective's last value after training `config` for its epochs; a diverged run scores DIVERGED."""
    trainer = Trainer(config, train, val, device)
    trainer.fit()
    value = (trainer.history[-1] if trainer.history else {}).get(metric, math.nan)
    return float(value) if trainer.status != "diverged" and math.isfinite(value) else DIVERGED[metric]


def fidelity(data: dict, epochs: int, val_samples: int) -> dict:
    """What a score was measured at: training rows and source, epochs, validation conditions and samples.
    data: report.json's `data` section (or the same keys for the re-runs)."""
    rows, source = data["train_rows"], data["train_file"]
    return {
        "train_rows": f"{rows} of {source}" if source else rows,
        "lines": data["lines"],
        "x_targets": data["x_targets"],
        "epochs": epochs,
        "val": data["val_file"] or f"{data['val_conditions']} synthetic conditions",
        "val_samples": val_samples,
    }


def choose(experiment: Experiment, top_k: int, seeds: int, rule: str, device=None, log=print) -> dict:
    """Re-run the top `top_k` configurations with `seeds` fresh seeds each; the report's `choice` section,
    with the configuration to retrain under "config"."""
    if experiment.results is None or experiment.path is None:
        raise FinalizeError("--top-k re-runs a search's top trials: pass --experiment <storage>/<name>")
    metric = OBJECTIVES[experiment.objective][0]
    pool = candidates(experiment, top_k)
    data = experiment.search_data or experiment.data
    train, val = data.build(experiment.config)
    measured = {"train_rows": int(train[0].shape[0]), "val_conditions": int(val[0].shape[0]), **data.model_dump()}
    total, started = len(pool) * seeds, time.perf_counter()
    log(f"re-running the top {len(pool)} configurations x {seeds} seeds at the search's fidelity ({total} runs)")
    for candidate in pool:
        for r in range(seeds):
            seed = candidate.config.seed + 1 + r  # seeds the search never trained this configuration with
            began = time.perf_counter()
            candidate.scores.append(rerun(candidate.config.replace(seed=seed), train, val, metric, device))
            done = sum(len(c.scores) for c in pool)
            log(
                f"re-run {done}/{total}: trial {candidate.trial_id} (rank {candidate.rank}), seed {seed}: "
                f"{metric} {candidate.scores[-1]:.4g} after {candidate.config.epochs} epochs, "
                f"{time.perf_counter() - began:.0f} s"
            )
    stats = [interval(c.scores) for c in pool]
    chosen = pick(stats, rule, experiment.mode)
    rows = [_row(c, s, i == chosen, experiment.params) for i, (c, s) in enumerate(zip(pool, stats))]
    config = experiment.config if rule == "best" else pool[chosen].config
    return {
        "rule": rule,
        "rule_words": PICKS[rule],
        "interval": INTERVAL,
        "prediction": PREDICTION,
        "metric": metric,
        "mode": experiment.mode,
        "seeds": [pool[0].config.seed + 1 + r for r in range(seeds)],
        "fidelity": fidelity(measured, pool[0].config.epochs, pool[0].config.val_samples),
        "search_best": {"trial_id": pool[0].trial_id, "score": pool[0].search_score},
        "optimism": pool[0].search_score - stats[0]["mean"],
        "candidates": rows,
        "picked": pool[chosen].trial_id,
        "seconds": round(time.perf_counter() - started, 1),
        "config": config,
    }


def _row(candidate: Candidate, stats: dict, picked: bool, params: list[str]) -> dict:
    return {
        "trial_id": candidate.trial_id,
        "rank": candidate.rank,
        "search_score": candidate.search_score,
        "search_epochs": candidate.search_epochs,
        "stop_reason": candidate.stop_reason,
        "params": {k: plain(getattr(candidate.config, k)) for k in params if hasattr(candidate.config, k)},
        "scores": candidate.scores,
        **stats,
        "picked": picked,
    }


def landed(choice: dict, report: dict) -> dict:
    """The choice section for report.json: the final model's score against the prediction for the picked
    configuration (inside, above or below), and whether both were measured at the same fidelity."""
    section = plain({k: v for k, v in choice.items() if k != "config"})  # JSON: NaN (a diverged re-run) is null
    picked = next(c for c in choice["candidates"] if c["picked"])
    score = report["training"]["final"].get(choice["metric"])
    low, high = picked["prediction"]
    where = "unknown"
    if isinstance(score, (int, float)) and math.isfinite(score) and math.isfinite(low) and math.isfinite(high):
        where = "inside" if low <= score <= high else "above" if score > high else "below"
    final = fidelity(report["data"], report["training"]["epochs"], report["config"]["val_samples"])
    differs = [k for k in final if str(final[k]) != str(choice["fidelity"][k])]
    section["final"] = {"score": score, "where": where, "fidelity": final, "differs": differs}
    return section


def choice_markdown(choice: dict | None) -> list[str]:
    """report.md's section "How sure is the choice" (nothing without re-runs)."""
    if not choice:
        return []
    metric, final = choice["metric"], choice.get("final") or {}
    best = choice["search_best"]
    lines = [
        "## How sure is the choice",
        "",
        f"The top {len(choice['candidates'])} configurations of the search, each re-run with seeds "
        f"{', '.join(map(str, choice['seeds']))} (seeds the search never used) at the search's fidelity: "
        + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in choice["fidelity"].items())
        + f". Interval: {choice['interval']}; prediction: {choice['prediction']}. "
        f"Retrained: trial `{choice['picked']}`, picked by `{choice['rule']}`: {choice['rule_words']}.",
        "",
        f"- search's best: trial `{best['trial_id']}`, {metric} {fmt(best['score'])} in the search; its re-runs' "
        f"mean {fmt(choice['candidates'][0]['mean'])}: **optimism of best-of-N {fmt(choice['optimism'])}**",
        "",
        f"| rank | trial | search {metric} (epochs) | re-runs | mean | std | 90% interval on the mean "
        "| 90% prediction | picked |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in choice["candidates"]:
        scores = ", ".join(fmt(s) for s in c["scores"])
        lines.append(
            f"| {c['rank']} | `{c['trial_id']}` | {fmt(c['search_score'])} ({c['search_epochs']}) | {scores} "
            f"| {fmt(c['mean'])} | {fmt(c['std'])} | {_span(c['ci'])} | {_span(c['prediction'])} "
            f"| {'**yes**' if c['picked'] else ''} |"
        )
    if final:
        lines += ["", _landed_line(final, metric)]
    return [*lines, ""]


def _span(bounds) -> str:
    low, high = bounds
    known = all(isinstance(b, (int, float)) and math.isfinite(b) for b in bounds)
    return f"[{fmt(low)}, {fmt(high)}]" if known else "n/a"


def _landed_line(final: dict, metric: str) -> str:
    score, where = fmt(final["score"]), final["where"]
    fidelity_words = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in final["fidelity"].items())
    if where == "inside":
        text = f"The final model's {metric}, {score}, lies inside the interval predicted for it"
    elif where == "unknown":
        text = f"The final model's {metric}, {score}, cannot be checked against the re-runs (no interval)"
    else:
        text = f"**Flag: the final model's {metric}, {score}, lies {where} the interval predicted for it**"
    if final["differs"]:
        text += (
            f". It was measured at the final training's fidelity ({fidelity_words}), which differs from the "
            f"re-runs' in {', '.join(k.replace('_', ' ') for k in final['differs'])}: the interval predicts the "
            "search's fidelity, so more rows or epochs may well land above it"
        )
    else:
        text += ", at the same fidelity as the re-runs"
    return text + "."
