#!/usr/bin/env python
"""Finalize a search: retrain its best configuration, validate it, plot it, save model and report.

    python scripts/finalize.py --experiment runs/my-search
    python scripts/finalize.py --config runs/my-search/best_config.yaml --out final/
    python scripts/finalize.py --experiment runs/my-search --top-k 3 --seeds 3   # the surest of the top 3

Writes model.pt, report.md, report.json, training_curves.png, samples.png, coverage.png and
(for an experiment) the Optuna study's search_*.png into --out (default: <experiment>/final).
The report validates the model in every regime, the search objective's first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cvae.inputs import number_at_least
from search.driver.files import FINAL
from search.trials import PICKS

PROG = "twobirds-finalize"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Retrain the best configuration of a search on the full training set for its full epochs "
            "(seeded, with a progress bar), validate it with 30 samples per validation condition, and "
            "write model.pt, report.md, report.json and PNG plots."
        ),
        epilog="Exit status: 0 done, 1 training diverged (files are still written), 2 bad input.",
    )
    source_arguments(parser)
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help="output folder (default: <experiment>/final, or final/ next to --config)",
    )
    parser.add_argument("--epochs", type=int, help="override the configuration's epochs (default: its full budget)")
    parser.add_argument(
        "--time-budget",
        metavar="S",
        type=number_at_least(float, minimum=1),
        help="seconds of training at most: after every epoch the epochs are re-planned to those that still fit "
        "at its pace, at most --epochs (the cosine schedule follows); report.json says how many ran "
        "(default: no limit)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the categorical loss before training (about a minute, counted in --time-budget; a "
        "y-phase epoch about 1.5x faster on a CPU); without a working compiler it says so and trains as without",
    )
    parser.add_argument(
        "--max-lr",
        metavar="LR",
        type=number_at_least(float, minimum=0),
        default=0.0,
        help="train at the chosen learning rate, at most LR: a run many times longer than the search's trials "
        "trains best at a lower peak rate than a short trial favours (default 0: as searched; the main job uses "
        "0.001, docs/quality.md)",
    )
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, ...")
    parser.add_argument("--samples", type=int, default=30, help="samples per validation condition (default 30)")
    data_arguments(parser)
    choice_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def source_arguments(parser) -> None:
    """--experiment or --config: what to retrain."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--experiment",
        metavar="DIR",
        type=Path,
        help="a search experiment folder <storage>/<name> (search_config.yaml, best_config.yaml, results.csv)",
    )
    source.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        help="a flat configuration YAML instead (e.g. a best_config.yaml); data: the data section of a "
        "search_config.yaml beside it, else the defaults (20000 synthetic rows, 50 synthetic validation "
        "conditions), then the options below; no plots of the search",
    )


def data_arguments(parser) -> None:
    """The data section's overrides: rows, files, seed, lines, targets."""
    data = parser.add_argument_group("data (override the experiment's data section)")
    data.add_argument("--train-size", type=int, help="training rows")
    data.add_argument("--train-file", help="a challenge .pt file to train on instead of synthetic lines")
    data.add_argument("--val-file", help="a validation .pt file, e.g. ../shared/twobirds/validation_dataset.pt")
    data.add_argument("--val-conditions", type=int, help="validation conditions to use")
    data.add_argument("--data-seed", type=int, help="seed of the synthetic data")
    data.add_argument(
        "--lines",
        choices=["official", "uniform"],
        help="synthetic training lines: official-like, or spread over the whole box [0, 1]",
    )
    data.add_argument(
        "--x-targets",
        choices=["given", "uniform_branch", "all_branches"],
        help="train on each line as drawn, on a uniformly drawn exact solution of its condition, or on all "
        "of its solutions (all_branches: the categorical latent averages its loss over them)",
    )


def choice_arguments(parser) -> None:
    """--top-k, --seeds, --pick: re-run the search's top configurations before retraining one."""
    robust = parser.add_argument_group(
        "a choice you can trust (re-run the search's top configurations before retraining one; --experiment only)"
    )
    robust.add_argument(
        "--top-k",
        type=int,
        metavar="K",
        help="re-run the search's K best configurations with --seeds fresh seeds each at the search's fidelity "
        "(its data and max_t epochs), report each one's mean and a Student-t 90%% interval, and retrain the one "
        "--pick chooses; report.md says how sure the choice is (default: no re-runs, retrain the best trial)",
    )
    robust.add_argument("--seeds", type=int, metavar="R", help="re-runs per configuration (default 3, >= 2)")
    robust.add_argument(
        "--pick",
        choices=list(PICKS),
        help="which configuration to retrain: lcb (the best lower end of the interval; the default when K > 1), "
        "mean (the best re-run mean) or best (the search's best trial; the default when K = 1)",
    )


def check_choice(args) -> str | None:
    """The pick rule of --top-k/--seeds/--pick (None: no re-runs); one line for a bad combination."""
    from cvae.inputs import InputError

    if args.top_k is None:
        for flag, value in (("--pick", args.pick), ("--seeds", args.seeds)):
            if value is not None:
                raise InputError(f"{flag} {value} needs --top-k K: the search's top configurations to re-run")
        return None
    args.seeds = 3 if args.seeds is None else args.seeds
    if args.top_k < 1 or args.seeds < 2:
        flag, value = ("--top-k", args.top_k) if args.top_k < 1 else ("--seeds", args.seeds)
        raise InputError(f"{flag} must be >= {1 if flag == '--top-k' else 2} (an interval needs 2 runs), got {value}")
    if args.experiment is None:
        raise InputError("--top-k re-runs a search's top trials: pass --experiment <storage>/<name>, not --config")
    return args.pick or ("lcb" if args.top_k > 1 else "best")


def picked(experiment, args, rule: str) -> dict:
    """The re-runs of the search's top configurations; `experiment` then retrains the one `rule` picks."""
    from search.finalize.choice import choose

    choice = choose(experiment, args.top_k, args.seeds, rule, args.device, lambda line: print(line, flush=True))
    experiment.config = choice["config"]
    runs = f"{len(choice['candidates'])} x {args.seeds} re-runs"
    experiment.source = f"trial {choice['picked']} of {args.experiment} (picked by {rule} from {runs})"
    print(f"picked trial {choice['picked']} by {rule}; optimism of best-of-N {choice['optimism']:.4g}", flush=True)
    return choice


def run_finalize(args) -> int:
    from cvae.inputs import InputError, check_data_files, check_device, check_output_folder
    from search.finalize import finalize, load_config_file, load_experiment, with_data

    rule = check_choice(args)

    overrides = {
        "train_size": args.train_size,
        "train_file": args.train_file,
        "val_file": args.val_file,
        "val_conditions": args.val_conditions,
        "seed": args.data_seed,
        "lines": args.lines,
        "x_targets": args.x_targets,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for name in ("epochs", "samples", "train_size", "val_conditions"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if args.experiment is not None:
        experiment = with_data(load_experiment(args.experiment), overrides)
        out = args.out or args.experiment / FINAL
    else:
        experiment = load_config_file(args.config, overrides)
        out = args.out or args.config.parent / FINAL
    check_data_files(experiment.data)  # every input is checked before the training data is built
    check_device(args.device)
    check_output_folder(out, "--out")
    choice = None if rule is None else picked(experiment, args, rule)
    print(f"finalizing {experiment.source} -> {out}", flush=True)
    report = finalize(
        experiment,
        out,
        epochs=args.epochs,
        device=args.device,
        samples=args.samples,
        progress=not args.quiet,
        choice=choice,
        time_budget=args.time_budget,
        compile=args.compile,
        max_lr=args.max_lr,
    )
    v, objective = report["validation"], report["objective"]
    gates = "PASS" if v["gates_pass"] else "FAIL"
    coverage = "n/a" if v["coverage_norm"] is None else f"{100 * v['coverage_norm']:.1f}%"
    score = "n/a" if v.get("score") is None else f"{v['score']:.4g}"
    rmse = "n/a" if v["overall_rmse"] is None else f"{v['overall_rmse']:.4g}"
    print(
        f"validation in the objective's regime ({objective['name']}: {objective['regime']}): gates {gates} "
        f"(overall RMSE {rmse}), valid samples {100 * v['valid_frac']:.1f}%, coverage_norm {coverage}, score {score}"
    )
    print(f"wrote {out}/: " + ", ".join(report["files"].values()) + ", report.md, report.json")
    for name, reason in report["skipped_plots"].items():
        print(f"note: {name}: {reason}")
    return 0 if report["training"]["status"] == "finished" else 1


def main(argv=None) -> int:
    from cvae.errors import run_command

    args = parse_args(argv)
    return run_command(PROG, lambda: run_finalize(args))


if __name__ == "__main__":
    sys.exit(main())
