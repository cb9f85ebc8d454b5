"""The README's main job (`make search`): search, finalize, generate, score, in one go.

Runs the default laptop search on a local Ray (this machine's cores), retrains the best
configuration, generates 30 samples for each official validation condition (or synthetic
ones when ../shared/twobirds is absent), scores them, and says where everything is.
Each step is the same command a user would type; they are printed as they run.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

from cvae.errors import UserError, run_command
from cvae.inputs import number_at_least
from cvae.regimes import Regime, submission_regime
from search.driver.files import BEST_CONFIG, FINAL, MODEL, REPORT_MD, RESULTS_CSV

REPO = Path(__file__).resolve().parents[1]
FINAL_EPOCHS = 150  # at most; the time budget decides (a chosen MLP's network-only validity follows its epochs)
FINAL_STEPS = 0  # no step budget: the time budget bounds finalize's time now (docs/quality.md)
FINAL_MAX_LR = 1e-3  # finalize trains ~10x a search trial's steps: a lower peak rate than short trials favour
FINAL_SECONDS = 600.0  # the search's 6 minutes + 10 of training + ~1.5 of the rest: the job within 20 minutes
OFFICIAL = REPO.parent / "shared" / "twobirds" / "validation_dataset.pt"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="twobirds-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(REPO / "search/configs/laptop.yaml"), help="search file")
    parser.add_argument("--out", default="runs/demo", help="everything lands here (default runs/demo)")
    parser.add_argument(
        "--time-budget",
        type=number_at_least(float, minimum=1),
        default=360,
        help="seconds for the search (default 360; the whole job takes about 17 min on 2 cores, README)",
    )
    add_final_options(parser)
    parser.add_argument(
        "--seed",
        type=int,
        help="one seed for the search (TPE), the models' initial weights and the synthetic data: a copy of the "
        "search file with these set is searched (default: the search file's own seeds)",
    )
    parser.add_argument(
        "--conditions", type=number_at_least(int, minimum=1), default=50, help="official conditions to generate for"
    )
    parser.add_argument(
        "--samples", type=number_at_least(int, minimum=1), default=30, help="samples per condition (challenge: 30)"
    )
    return parser.parse_args(argv)


def add_final_options(parser: argparse.ArgumentParser) -> None:
    """The --final-* options: how finalize retrains the chosen configuration (finalize_options reads them)."""
    parser.add_argument(
        "--final-rows",
        type=number_at_least(int, minimum=1),
        default=100_000,
        help="training rows for the final MLP (default 100000, the official training set's size; "
        "a conv model keeps the search's rows, its epochs cost ~15x more)",
    )
    parser.add_argument(
        "--final-epochs",
        type=number_at_least(int, minimum=0),
        default=FINAL_EPOCHS,
        help=f"at most this many epochs for the final MLP (default {FINAL_EPOCHS}: --final-time-budget decides; "
        "0 keeps the search's max_t)",
    )
    parser.add_argument(
        "--final-steps",
        type=number_at_least(int, minimum=0),
        default=FINAL_STEPS,
        help="gradient steps for the final MLP: its epochs are these steps' worth of --final-rows at the chosen "
        "batch size, at most --final-epochs (default 0: no step budget, --final-time-budget bounds the time)",
    )
    parser.add_argument(
        "--final-time-budget",
        type=number_at_least(float, minimum=1),
        default=FINAL_SECONDS,
        help=f"seconds of training at most for the final model (default {FINAL_SECONDS:g}; finalize --time-budget: "
        "the epochs that still fit, re-planned after each), so a wide network or a large batch keeps the job's time",
    )
    parser.add_argument(
        "--final-max-lr",
        type=number_at_least(float, minimum=0),
        default=FINAL_MAX_LR,
        help=f"finalize --max-lr: the final model trains at the chosen learning rate, at most this (default "
        f"{FINAL_MAX_LR:g}: its run is about ten times a search trial's steps, and a longer run trains best at a "
        "lower peak rate than a short trial favours, docs/quality.md; 0: as searched)",
    )
    parser.add_argument(
        "--final-compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="finalize --compile: torch.compile the loss, more epochs in the time budget (default on)",
    )


class StepFailed(UserError):
    """A step of the main job exited non-zero; its own output above says why."""


def run(*args) -> None:
    command = [sys.executable, *map(str, args)]
    print(f"\n$ {shlex.join(['python', *map(str, args)])}", flush=True)
    done = subprocess.run(command, cwd=REPO)
    if done.returncode != 0:
        raise StepFailed(f"step failed with exit code {done.returncode}: {shlex.join(map(str, args))}")


class SearchFileError(UserError):
    """A search file the main job cannot read to set its seeds."""


SEEDED = ("search", "fixed", "data")  # the sections whose `seed` --seed sets


def seeded_search_file(path: Path, seed: int, out: Path) -> Path:
    """A copy of the search file at `path` in `out` with search.seed (TPE), fixed.seed (initial weights) and
    data.seed (the synthetic data) set to `seed`; the search itself checks everything else in it."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SearchFileError(f"{path}: cannot read the search file to set --seed ({type(err).__name__})") from None
    if not isinstance(raw, dict) or any(not isinstance(raw.get(k, {}), dict) for k in SEEDED):
        raise SearchFileError(f"{path}: not a search file (expected sections {', '.join(SEEDED)}); see docs/search.md")
    for section in SEEDED:
        raw[section] = {**(raw.get(section) or {}), "seed": seed}
    out.mkdir(parents=True, exist_ok=True)
    copy = out / f"search_seed{seed}.yaml"
    copy.write_text(f"# {path} with every seed set to {seed} (twobirds-demo --seed)\n" + yaml.safe_dump(raw))
    return copy


def final_epochs(epochs: int, steps: int, rows: int, batch_size: int) -> int:
    """The final model's epochs: `steps` gradient steps' worth of `rows` at `batch_size`, at most `epochs`.

    Finalize's time goes with its steps, and a chosen batch of 64 takes twice the steps of 128 per epoch.
    """
    if not steps:
        return epochs
    return max(1, min(epochs, round(steps * batch_size / rows)))


def final_data(experiment: Path, rows: int, epochs: int | None = None, steps: int = 0) -> list[str]:
    """finalize's data options: more rows (and epochs, within a step budget) for a chosen MLP."""
    import yaml

    path = experiment / BEST_CONFIG
    best = yaml.safe_load(path.read_text()) if path.is_file() else None  # finalize reports a missing one
    if not isinstance(best, dict):
        return []
    if best.get("model") != "mlp":
        print(f"finalize: the chosen model is {best.get('model')!r}, not an MLP: training rows as in the search")
        return []
    if epochs and steps and isinstance(best.get("batch_size"), int):
        chosen = final_epochs(epochs, steps, rows, best["batch_size"])
        if chosen < epochs:
            print(
                f"finalize: {chosen} epochs of {rows} rows at batch {best['batch_size']} ({steps} steps, --final-steps)"
            )
        epochs = chosen
    return ["--train-size", str(rows), *(["--epochs", str(epochs)] if epochs else [])]


def finalize_options(experiment: Path, args) -> list[str]:
    """finalize's options from the --final-* arguments (bench/search_budget.py finalizes the same way)."""
    options = final_data(experiment, args.final_rows, args.final_epochs, args.final_steps)
    options += ["--time-budget", f"{args.final_time_budget:g}", *(["--compile"] if args.final_compile else [])]
    return [*options, "--max-lr", f"{args.final_max_lr:g}"]


def chosen_latent(experiment: Path) -> str | None:
    """The latent family of the search's best configuration (it sets the refinement proposals' temperature)."""
    import yaml

    path = experiment / BEST_CONFIG
    best = yaml.safe_load(path.read_text()) if path.is_file() else None
    return best.get("latent") if isinstance(best, dict) else None


def conditions_file(out: Path, count: int) -> Path:
    """The first `count` official validation conditions, or synthetic ones without ../shared."""
    from cvae.data import load_challenge, make_dataset, save_submission
    from cvae.functions import FunctionPair

    if OFFICIAL.is_file():
        x, y = load_challenge(OFFICIAL)
        source = f"the first {count} official validation conditions ({OFFICIAL})"
    else:
        x, y = make_dataset(count, FunctionPair(), seed=2026)
        source = f"{count} synthetic conditions (../shared/twobirds is absent)"
    path = out / "conditions.pt"
    save_submission(path, x[:count].unsqueeze(1), y[:count])  # one true solution per condition
    print(f"conditions: {source} -> {path}")
    return path


SCORES = "submissions.json"


def record_scores(path: Path, submissions, samples: int) -> str:
    """final/submissions.json: each submission's regime (cvae.regimes) and its score (score.py --json-out).

    Returns a one-line digest for the console.
    """
    import json

    entries, digest = [], []
    for file, regime in submissions:
        score = json.loads(file.with_suffix(".score.json").read_text())
        settings = {"kind": regime.kind, "proposals": regime.proposals or samples}
        settings.update(refine_steps=regime.refine_steps, temperature=regime.temperature)
        entries.append({"file": file.name, "regime": regime.label, "settings": settings, "score": score})
        coverage = score.get("coverage_norm")
        digest.append(
            f"{regime.label}: gates {'PASS' if score['gates_pass'] else 'FAIL'}, valid {100 * score['valid_frac']:.1f}%"
            + ("" if coverage is None else f", coverage_norm {coverage:.3f}")
        )
    path.write_text(json.dumps({"submissions": entries}, indent=2) + "\n")
    return "; ".join(digest)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_command("twobirds-demo", lambda: main_job(args))


def main_job(args) -> int:
    started = time.perf_counter()
    out = Path(args.out).resolve()  # relative to the current folder (`make search` runs in the checkout)
    experiment, final = out / "search", out / FINAL
    if (experiment / RESULTS_CSV).is_file():
        print(f"search: {experiment} is finished already; delete {out} to start over")
    elif experiment.exists():
        run("scripts/tune.py", "--name", "search", "--storage", out, "--resume")
    else:
        config = args.config if args.seed is None else seeded_search_file(args.config, args.seed, out)
        run(
            "scripts/tune.py",
            "--config",
            config,
            "--name",
            "search",
            "--storage",
            out,
            "--time-budget",
            args.time_budget,
        )
    run("scripts/finalize.py", "--experiment", experiment, "--out", final, *finalize_options(experiment, args))
    scoring = conditions_file(final, args.conditions)
    # Every regime (cvae/regimes.py) generated and scored apart: the network alone, no solver, the solver.
    latent = chosen_latent(experiment)
    regimes = {
        "submission.pt": Regime("network"),
        "submission_check.pt": submission_regime("check", latent, args.samples),
        "submission_refined.pt": submission_regime("refined", latent, args.samples),
    }
    for name, regime in regimes.items():
        options = [] if regime.kind == "network" else ["--regime", regime.kind, "--proposals", regime.proposals]
        if regime.refine_steps:
            options += ["--refine-steps", regime.refine_steps]
        if regime.refine_steps or regime.temperature != 1.0:
            options += ["--temperature", regime.temperature]
        path = final / name
        model = ["--model", final / MODEL, "--scoring", scoring, "--samples", args.samples]
        run("scripts/generate.py", *model, *options, "--out", path)
        score = ["--scoring", scoring, "--samples", args.samples, "--json-out", path.with_suffix(".score.json")]
        run("scripts/score.py", path, *score)
    scores = record_scores(final / SCORES, [(final / name, regime) for name, regime in regimes.items()], args.samples)
    minutes = (time.perf_counter() - started) / 60
    print(
        f"\ndone in {minutes:.1f} min\n"
        f"  report:      {final / REPORT_MD} (and report.json, *.png beside it)\n"
        f"  model:       {final / MODEL}\n"
        "  submissions: " + ", ".join(f"{final / name} ({regime.label})" for name, regime in regimes.items()) + "\n"
        f"  scores:      {final / SCORES}: {scores}\n"
        f"  trials:      {experiment / RESULTS_CSV}, best config {experiment / BEST_CONFIG}\n"
        f"  TensorBoard: tensorboard --logdir {experiment}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
