#!/usr/bin/env python
"""Write a challenge submission: S samples for every condition of a scoring file.

    python scripts/generate.py --model runs/my-search/final/model.pt \\
        --scoring ../shared/twobirds/validation_dataset.pt --samples 30 --out result.pt

The result is a TensorDataset(x, y) of shapes (N*S, 1, 50, 2): for each condition S
consecutive rows whose y repeats the given condition. --regime picks how (cvae/regimes.py):

    network   the network alone, S draws (default; the challenge's setting)
    check     K draws (--proposals, default 300), the valid ones kept, S spread-out ones selected; no solver
    refined   K proposals (default 300), --refine-steps Levenberg-Marquardt steps (default 20), S selected
    uniform   the same as refined from uniformly random lines: the no-learning baseline, no model needed
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cvae.regimes import CATEGORICAL_CHECK_SPREAD, SUBMISSION_PROPOSALS, SUBMISSION_REFINE_STEPS

PROG = "twobirds-generate"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Generate a challenge submission (TensorDataset(x, y), S consecutive rows per condition) "
        "from a trained model for the conditions (y) of a scoring file.",
        epilog="regimes (cvae/regimes.py):\n"
        "  network  the network alone, S draws (default; the challenge's setting)\n"
        "  check    K draws, the valid ones kept, S spread-out ones selected; no solver\n"
        "  refined  K network proposals, Levenberg-Marquardt, S selected\n"
        "  uniform  refined from uniformly random lines: the no-learning baseline\n"
        "Score the result with: python scripts/score.py RESULT --scoring FILE",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        type=Path,
        help="a model.pt from finalize (or a trainer checkpoint); optional with --proposals-from uniform",
    )
    parser.add_argument(
        "--scoring",
        type=Path,
        required=True,
        help="challenge .pt file whose y holds the conditions (one per row; a submission's repeated rows count once)",
    )
    parser.add_argument("--out", type=Path, default=Path("result.pt"), help="output file (default result.pt)")
    _sampling_args(parser)
    parser.add_argument(
        "--functions",
        nargs=2,
        metavar="EXPR",
        help="condition functions (default: the model's; without a model the official pair)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, ...")
    return parser.parse_args(argv)


def _sampling_args(parser: argparse.ArgumentParser) -> None:
    """How the samples are drawn: the regime and the flags it sets."""
    parser.add_argument(
        "--regime",
        choices=("network", "check", "refined", "uniform"),
        help="network only (the default), network + check, network + refinement, or uniform + refinement; "
        "sets the defaults of --proposals (300), --refine-steps (20) and --proposals-from",
    )
    parser.add_argument("--samples", type=int, default=30, help="samples per condition (default 30, as the challenge)")
    parser.add_argument(
        "--refine-steps",
        type=int,
        default=0,
        help="Levenberg-Marquardt steps polishing each proposal's line endpoints (default 0: none)",
    )
    parser.add_argument(
        "--proposals",
        type=int,
        help="proposals drawn per condition (>= --samples); the --samples best valid, spread-out "
        "ones are kept (default: --samples, no selection)",
    )
    parser.add_argument(
        "--proposals-from",
        choices=("model", "uniform", "mixed"),
        default="model",
        help="where proposals come from: the network, uniformly random monotone lines "
        "(the no-learning baseline; pair it with --refine-steps), or mixed (--mix of them from the network)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="scale of the latent noise z (default 1; > 1 spreads the network's proposals wider; "
        "categorical latent: c ~ p(c | y)^(1/T))",
    )
    parser.add_argument(
        "--spread",
        type=float,
        help="categorical latent: noise std (endpoint units) of the proposals beyond the network's components "
        "(default with --regime check: the main job's check, cvae.regimes.CATEGORICAL_CHECK_SPREAD; otherwise "
        "sigma x --temperature)",
    )
    parser.add_argument(
        "--mix",
        type=float,
        default=0.5,
        help="with --proposals-from mixed: fraction of proposals from the network (default 0.5)",
    )


def apply_regime(args) -> None:
    """--regime's defaults for the flags it implies (explicit flags win)."""
    if args.regime in ("check", "refined", "uniform") and args.proposals is None:
        args.proposals = max(SUBMISSION_PROPOSALS, args.samples)
    if args.regime in ("refined", "uniform") and args.refine_steps == 0:
        args.refine_steps = SUBMISSION_REFINE_STEPS
    if args.regime == "uniform":
        args.proposals_from = "uniform"


def regime_label(args) -> str:
    """What the submission is, in the words every report uses (cvae.regimes.Regime.label)."""
    from cvae.regimes import Regime

    k = args.proposals or args.samples
    if args.proposals_from == "mixed":
        return f"mixed proposals ({args.mix:.0%} network) + refinement (K={k}, {args.refine_steps} LM steps)"
    if args.proposals_from == "uniform" and not args.refine_steps:
        return f"uniform random lines, no refinement (K={k})"  # the baseline before the solver: no regime
    if args.proposals_from == "uniform":
        kind = "uniform"
    elif args.refine_steps:
        kind = "refined"
    else:
        kind = "check" if k > args.samples else "network"
    return Regime(kind, k, args.refine_steps, temperature=args.temperature, spread=args.spread).label


def spread_for(args, latent: str | None) -> float | None:
    """--spread as the model uses it: a categorical check's default is the main job's; other models draw none."""
    if latent != "categorical":
        return None
    if args.spread is None and args.regime == "check":
        return CATEGORICAL_CHECK_SPREAD
    return args.spread


def write_submission(args) -> int:
    """Check every flag, load the model, draw the samples in the chosen regime and save them."""
    import torch

    from cvae.data import save_submission
    from cvae.functions import OFFICIAL_FUNCTIONS, FunctionPair
    from cvae.inputs import InputError, check_device, check_model_file, check_output_file, check_sampling
    from cvae.sampling import generate
    from cvae.submission import read_conditions
    from cvae.train import load_model, pick_device

    if args.model is None and args.proposals_from != "uniform":
        raise InputError("--model is required (or pass --proposals-from uniform for the no-model baseline)")
    check_sampling(args.samples, args.proposals, args.refine_steps, args.mix, args.temperature, args.spread)
    check_device(args.device)
    check_output_file(args.out, "--out")
    model = None
    if args.model is not None:
        check_model_file(args.model)
        model = load_model(args.model, args.device)
    args.spread = spread_for(args, model.config.latent if model is not None else None)
    functions = FunctionPair(args.functions or (model.config.functions if model is not None else OFFICIAL_FUNCTIONS))
    device = next(model.parameters()).device if model is not None else pick_device(args.device)
    conditions = read_conditions(args.scoring, functions)
    print(f"conditions: {conditions.note}", flush=True)
    started = time.perf_counter()
    x = generate(
        model,
        conditions.y.to(device),
        functions,
        samples=args.samples,
        proposals=args.proposals,
        refine_steps=args.refine_steps,
        proposals_from=args.proposals_from,
        generator=torch.Generator(device).manual_seed(args.seed),
        noise=model.config.noise if model is not None else "prior",
        temperature=args.temperature,
        mix=args.mix,
        spread=args.spread,
    )
    seconds = time.perf_counter() - started
    path = save_submission(args.out, x, conditions.y)
    n, s = x.shape[:2]
    source = {
        "uniform": "uniform random lines",
        "mixed": f"{args.model} ({args.mix:.0%}) and uniform random lines",
    }.get(args.proposals_from, str(args.model))
    extra = []
    if args.proposals and args.proposals > args.samples:
        extra.append(f"{args.proposals} proposals selected down to {s}")
    if args.refine_steps:
        extra.append(f"{args.refine_steps} refinement steps")
    print(
        f"wrote {path}: {n} conditions x {s} samples = {n * s} rows from {source}"
        + (f" ({', '.join(extra)})" if extra else "")
        + f" in {seconds:.1f} s on {device}; regime: {regime_label(args)}"
    )
    print(f"score it: python scripts/score.py {path} --scoring {args.scoring}")
    return 0


def main(argv=None) -> int:
    from cvae.errors import run_command

    args = parse_args(argv)
    apply_regime(args)
    return run_command(PROG, lambda: write_submission(args))


if __name__ == "__main__":
    sys.exit(main())
