"""`twobirds-tune` / `python scripts/tune.py`: run or resume a hyperparameter search."""

from __future__ import annotations

import argparse
import sys

from cvae.errors import run_command
from cvae.inputs import number_at_least

from . import run_search

EPILOG = """examples:
  %(prog)s --config search/configs/laptop.yaml --name laptop --storage runs
  %(prog)s --config search/configs/cluster.yaml --name big --storage /nfs/runs --address auto \\
      --gpus-per-trial 0.25
  %(prog)s --config search/configs/laptop.yaml --name laptop --storage runs --resume   # after Ctrl-C
  %(prog)s --name laptop --storage runs --more 20                    # 20 more trials, same study
  %(prog)s --config narrower.yaml --name laptop2 --storage runs --warm-start runs/laptop
then: tensorboard --logdir runs/laptop   (results.csv, results.parquet, best_config.yaml in that folder)"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="twobirds-tune",
        description="Hyperparameter search for the Two Birds CVAE: Ray Tune + Optuna TPE + ASHA, "
        "monitored in TensorBoard. Command-line values override the search file's `search:` section.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _what_and_where(p)
    _resources(p)
    _iterations(p)
    return p


def _what_and_where(p: argparse.ArgumentParser) -> None:
    """The search file, the experiment's name and folder, how many trials."""
    p.add_argument(
        "--config",
        metavar="FILE",
        help="search file (YAML), e.g. search/configs/laptop.yaml; "
        "optional with --resume and --more, which use the experiment's saved copy",
    )
    p.add_argument("--name", required=True, help="experiment name: the folder <storage>/<name>/")
    p.add_argument(
        "--storage",
        required=True,
        metavar="DIR",
        help="local or NFS folder, or an s3:// / gs:// URI (shared by all nodes on a cluster)",
    )
    p.add_argument("--num-samples", type=int, metavar="N", help="number of trials (search.num_samples)")


def _resources(p: argparse.ArgumentParser) -> None:
    """Where the trials run and for how long."""
    p.add_argument(
        "--address",
        metavar="A",
        help="none: start Ray on this machine's cores; 'auto', host:port or ray://host:10001: join that cluster",
    )
    p.add_argument(
        "--cpus-per-trial", type=number_at_least(float), metavar="C", help="CPUs per trial (search.cpus_per_trial)"
    )
    p.add_argument(
        "--gpus-per-trial",
        type=number_at_least(float),
        metavar="G",
        help="GPUs per trial, fractions allowed: 0.25 runs four trials per GPU (search.gpus_per_trial)",
    )
    p.add_argument(
        "--time-budget",
        type=number_at_least(float),
        metavar="S",
        help="stop the whole search after S seconds (search.time_budget_s)",
    )


def _iterations(p: argparse.ArgumentParser) -> None:
    """Going on from earlier experiments: resume, trust, warm start, more trials."""
    p.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted experiment: completed trials are kept, the searcher continues",
    )
    p.add_argument(
        "--trust",
        action="store_true",
        help="with --resume or --more: read an experiment folder this project did not sign (another user's or "
        "machine's run, or one from before signing); Ray unpickles its state files, so only for folders you trust",
    )
    p.add_argument(
        "--warm-start",
        nargs="+",
        default=[],
        metavar="DIR",
        help="start a new experiment whose TPE already knows the finished trials of these earlier experiment "
        "folders (read from their optuna.journal): those that fit the new space are taken, the others skipped",
    )
    p.add_argument(
        "--more",
        type=number_at_least(int, minimum=1),
        metavar="N",
        help="run N more trials in the finished experiment --name (same search file, the study and the trial "
        "numbering continue; with --time-budget S they stop after S seconds)",
    )


def main(argv=None) -> int:
    args = parser().parse_args(argv)

    def search() -> int:
        run_search(
            args.config,
            args.name,
            args.storage,
            num_samples=args.num_samples,
            address=args.address,
            cpus_per_trial=args.cpus_per_trial,
            gpus_per_trial=args.gpus_per_trial,
            time_budget=args.time_budget,
            resume=args.resume,
            trust=args.trust,
            warm_start=args.warm_start,
            more=args.more,
        )
        return 0

    return run_command("twobirds-tune", search)


if __name__ == "__main__":
    sys.exit(main())
