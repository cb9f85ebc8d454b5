"""Finalize's report: the model validated in every regime, the search objective's regime first.

The regimes come from `cvae.regimes` (named there once); this module chooses which ones a report
shows, says which one the search optimised, counts the search's trials by how they ended, lists
what differs between the search and the final training, and renders report.md.
"""

from __future__ import annotations

from cvae.regimes import Regime, submission_regime
from cvae.scorecard import as_markdown, fmt, pct

from ..driver.warm_start import summary_lines
from ..trials import counts_text, objective_regime
from .choice import choice_markdown

DEFAULT_REFINE_STEPS = 10  # the laptop search's val_refine_steps, for experiments that did not refine


def report_regimes(objective: str, metric: str, config, samples: int) -> list[dict]:
    """[{key, regime, role}], the objective's regime first, then the others the project has, each once."""
    steps = getattr(config, "val_refine_steps", 0) or DEFAULT_REFINE_STEPS
    latent = getattr(config, "latent", None)
    candidates = [
        ("objective", objective_regime(metric, config, samples), f"the search objective's regime ({objective})"),
        ("network", Regime("network"), "the network alone (the challenge's setting)"),
        (
            "check",
            submission_regime("check", latent, samples),
            "the check submission's settings: valid draws kept, no solver",
        ),
        (
            "refined_objective",
            Regime("refined", proposals=samples, refine_steps=steps),
            "every sample refined, none selected: how refined_score measures",
        ),
        ("submission", submission_regime("refined", latent, samples), "the refined submission's settings"),
    ]
    out, seen = [], set()
    for key, regime, role in candidates:
        if regime in seen:
            continue
        seen.add(regime)
        out.append({"key": key, "regime": regime, "role": role})
    return out


def summary_line(v: dict) -> str:
    """One validation on one line: gates, valid samples, coverage_norm, score."""
    coverage = "n/a" if v["coverage_norm"] is None else f"{100 * v['coverage_norm']:.1f}%"
    score = "n/a" if v.get("score") is None else f"{v['score']:.4g}"
    return (
        f"gates {'PASS' if v['gates_pass'] else 'FAIL'}, valid {100 * v['valid_frac']:.1f}%, "
        f"coverage_norm {coverage}, score {score}"
    )


def differences(search: dict, config, data, samples: int) -> list[dict]:
    """What the search trained and validated with against what the final training used."""
    section = search.get("data") or {}
    asha = search.get("asha") or {}
    fixed = search.get("fixed") or {}
    rows = [
        ("training rows", section.get("train_size", "default"), data.train_size, "data.train_size"),
        ("training file", section.get("train_file") or "synthetic", data.train_file or "synthetic", "data.train_file"),
        ("training lines", section.get("lines", "official"), data.lines, "data.lines"),
        ("x targets", section.get("x_targets", "given"), data.x_targets, "data.x_targets"),
        ("validation conditions", section.get("val_conditions", "default"), data.val_conditions, "data"),
        ("epochs", asha.get("max_t", fixed.get("epochs")), config.epochs, "asha.max_t"),
        (
            "samples per validation condition",
            fixed.get("val_samples", config.val_samples),
            samples,
            "fixed.val_samples / --samples",
        ),
    ]
    out = []
    for what, searched, final, source in rows:
        if searched in (None, "default"):
            continue
        same = str(searched) == str(final)
        out.append({"what": what, "search": searched, "final": final, "same": same, "source": source})
    return out


def lr_difference(chosen: float, final: float) -> dict:
    """The differences row of a learning rate finalize capped (--max-lr)."""
    chosen, final = (float(f"{value:.4g}") for value in (chosen, final))
    return {"what": "learning rate", "search": chosen, "final": final, "same": False, "source": "--max-lr"}


# --- report.md ------------------------------------------------------------------------------


CAPTIONS = {
    "training_curves": "Training losses and the searched objective (and its parts) per epoch",
    "samples": "Generated lines in the objective's regime against a true solution, and f(x) against the given y",
    "samples_network": "The same conditions, network only",
    "coverage": "Solution coverage in the objective's regime: each exact branch, hit ones filled green",
    "coverage_network": "Solution coverage, network only",
    "search_history": "Optuna: optimisation history in trial order with the best so far",
    "search_epochs": "Optuna: every trial's objective per epoch (ASHA's stops visible)",
    "search_slices": "Optuna: the objective against each searched parameter",
    "search_importances": "Optuna: parameter importances",
}


def report_markdown(report: dict) -> str:
    """report.md: the summary, every regime, the search against the final training, training, pictures."""
    regimes = report.get("regimes") or [
        {"key": "objective", "label": "network only", "role": "", "validation": report["validation"]}
    ]
    lines = [*_summary(report, regimes[0]), *choice_markdown(report.get("choice"))]
    lines += [*_regime_sections(regimes), *_differences(report.get("differences"))]
    lines += _warm_start(report.get("warm_start"))
    lines += _training_lines(report["training"], report.get("objective") or {})
    lines += ["", "## Configuration", "", "| key | value |", "| --- | --- |"]
    lines += [f"| {k} | `{value}` |" for k, value in report["config"].items()]
    lines += ["", "## Pictures", ""]
    for key, file in report["files"].items():
        if key != "model":
            lines += [f"![{CAPTIONS.get(key, key)}]({file})", ""]
    for key, why in report["skipped_plots"].items():
        lines += [f"- {key}: {why}", ""]
    timings = ", ".join(f"{k.removesuffix('_s')} {val:.2f} s" for k, val in report["timings"].items())
    return "\n".join([*lines, "## Timings", "", timings + ".", ""])


def _summary(report: dict, first: dict) -> list[str]:
    training, timings, config = report["training"], report["timings"], report["config"]
    objective, v = report.get("objective") or {}, first["validation"]
    lines = ["# Final model", "", f"- configuration: `{report['config_source']}`"]
    if report["experiment"]:
        search = report["search"]
        best = search["best_trial"] or {}
        counts = search.get("ended")
        lines.append(
            f"- experiment: `{report['experiment']}`; "
            + (f"{counts['total']} trials: {counts_text(counts)}" if counts else f"{search['trials']} trials")
            + f"; best trial `{best.get('trial_id', '?')}` ({best.get('stop_reason', '?')}, "
            f"{best.get('epochs', '?')} epochs): {objective.get('metric', 'score')} {fmt(best.get('score'))} "
            f"in the search"
        )
    if objective:
        lines.append(
            f"- objective: `{objective['name']}` ({objective['metric']}, {objective['mode']}imised), measured "
            f"in the regime **{objective['regime']}**"
        )
    data = report["data"]
    return [
        *lines,
        f"- functions: `{config['functions'][0]}`, `{config['functions'][1]}`",
        f"- data: {data['train_rows']} training rows ({data['train_file'] or 'synthetic'}), "
        f"{data['val_conditions']} validation conditions ({data['val_file'] or 'synthetic'})",
        f"- training: {training['status']} after {training['epochs']} epochs on {report['device']}, "
        f"{timings['train_s']:.1f} s ({timings['epoch_mean_s']:.2f} s per epoch)",
        f"- model: `{report['files']['model']}` (load with `cvae.train.load_model`)",
        "",
        f"**Final model, {first['label']} (the search objective's regime): gates "
        f"{fmt(v['gates_pass'])}, valid {pct(v['valid_frac'])}, coverage_norm {pct(v['coverage_norm'])}, "
        f"score {fmt(v.get('score'))}.**",
        "",
    ]


def _regime_sections(regimes: list[dict]) -> list[str]:
    first = regimes[0]
    lines = [
        "## Every regime",
        "",
        "The same model and validation conditions; the first row is the regime the search optimised.",
        "",
        "| regime | role | gates | valid | coverage_norm | overall RMSE | score |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for entry in regimes:
        r = entry["validation"]
        name = f"**{entry['label']}**" if entry is first else entry["label"]
        lines.append(
            f"| {name} | {entry['role']} | {fmt(r['gates_pass'])} | {pct(r['valid_frac'])} "
            f"| {pct(r['coverage_norm'])} | {fmt(r['overall_rmse'])} | {fmt(r.get('score'))} |"
        )
    lines += [""]
    for entry in regimes:
        suffix = " (the search objective's regime)" if entry is first else ""
        lines += [f"## Validation: {entry['label']}{suffix}", "", *as_markdown(entry["validation"])]
    return lines


def _warm_start(record: dict | None) -> list[str]:
    """What the search took from earlier experiments (--warm-start), as the search's console said it."""
    if not record:
        return []
    intro = "The search's study started with the finished trials of earlier experiments (`warm_start.json`):"
    return ["## Warm start", "", intro, "", "```text", *summary_lines(record), "```", ""]


def _differences(diffs: list[dict] | None) -> list[str]:
    if not diffs:
        return []
    rows = [f"| {d['what']} | {d['search']} | {d['final']} | {'same' if d['same'] else '**differs**'} |" for d in diffs]
    head = ["## The search and the final training", "", "| | search | final training | |", "| --- | --- | --- | --- |"]
    return [*head, *rows, ""]


def _training_lines(training: dict, objective: dict) -> list[str]:
    metric = objective.get("metric", "val_score")
    parts = ("val_refined_valid_frac", "val_refined_coverage_norm") if metric == "val_refined_score" else ()
    final = training["final"]
    columns = ["loss", "kld", "x_loss", "y_loss"]
    columns += [metric] if metric not in columns else []
    columns += [c for c in ("val_score", *parts, "val_valid_frac") if c not in columns]
    lines = [
        "## Training",
        "",
        "Final epoch: " + ", ".join(f"{k} {fmt(val)}" for k, val in final.items()) + ".",
        "",
        "| epoch | " + " | ".join(columns) + " | seconds |",
        "| --- | " + " | ".join("---" for _ in columns) + " | --- |",
    ]
    for row in training["history"]:
        cells = [pct(row.get(c)) if c.endswith(("valid_frac", "coverage_norm")) else fmt(row.get(c)) for c in columns]
        lines.append(f"| {row.get('epoch')} | " + " | ".join(cells) + f" | {fmt(row.get('seconds'), 3)} |")
    return lines
