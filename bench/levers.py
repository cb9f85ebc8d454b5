"""Network-only quality levers (issue 26): train a categorical recipe, score it on official rows.

Trains the main job's categorical configuration (MAIN_JOB below: what its search chose, docs/quality.md)
with `--set key=value` changes, on `--train-size` synthetic rows (lines over the whole box, every exact
solution a target, as the main job's finalize trains), and scores the model on official validation rows
(never trained on; default 0-49 and 1000-1499, each block apart), 30 samples per condition:

- network only, at each `--temperatures` value of the prior's sharpening p(c | y)^(1/T);
- network + check (K=300, no solver; as the main job draws it, or at each pair of `--check-temperatures`
  and `--check-spreads`), and with `--refined` network + refinement (K=30, 20 LM steps);
- how far the network's own samples are from the nearest exact solution (max-abs endpoint distance:
  the RMSE < 0.1 gate asks for about 0.002), and the prior's mass on valid components;
- with `--ema`: the same run's exponential moving averages of the weights (one per decay, updated after every
  optimizer step, torch.optim.swa_utils), each scored beside the weights as trained.

    .venv/bin/python bench/levers.py --set condition_features=y_arccos --train-size 20000 --epochs 30
    .venv/bin/python bench/levers.py --model runs/demo/final/model.pt      # score a trained model only
    .venv/bin/python bench/levers.py --model runs/demo/final/model.pt --synthetic 300   # official rows unseen
    .venv/bin/python bench/levers.py --model runs/demo/final/model.pt --synthetic 300 --check-spreads 0.003,0.004
    .venv/bin/python bench/levers.py --train-size 100000 --epochs 60 --ema 0.999,0.9999   # weight averages
    .venv/bin/python bench/levers.py --quick                               # seconds, for the tests

Prints a markdown table and `RESULT` lines for the goals of issue 26 (the main job's: network only
>= 60% valid, coverage_norm >= 0.5, on every row block).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import yaml
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import load, machine, result, table
from bench.official import BLOCKS, fresh_conditions, official_rows, regimes_for, row_blocks, score
from cvae.config import Config
from cvae.data import DataSpec
from cvae.functions import FunctionPair
from cvae.inputs import number_at_least, positive_numbers
from cvae.metrics import branches
from cvae.regimes import Regime
from cvae.sampling import prior_valid_mass
from cvae.train import Trainer, load_model

# The configuration the main job's search chose in docs/quality.md's measured run (85c5003), as finalize trains it.
MAIN_JOB = dict(
    latent="categorical",
    hidden=256,
    depth=4,
    components=84,
    sigma=0.008,
    sigma_start=0.1,
    sigma_anneal=10,
    beta=0.27,
    wy=10.0,
    wy_delay=10,
    wv=1.03,
    optimizer="Adam",
    lr=9.5e-4,
    batch_size=128,
    lr_schedule="cosine",
    epochs=60,
)
QUICK = dict(latent="categorical", components=8, hidden=32, depth=1, wy=1.0, wv=1.0, epochs=1, sigma_start=0.0)
DATA = dict(lines="uniform", x_targets="all_branches")
AS_TRAINED = "as trained"  # the weights the goals judge; --ema adds their averages beside them


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="score this model.pt instead of training one")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a Config change (YAML value)")
    parser.add_argument("--data", action="append", default=[], metavar="KEY=VALUE", help="a DataSpec change")
    parser.add_argument("--train-size", type=int, default=20000, help="training rows (default 20000)")
    parser.add_argument("--epochs", type=int, help="epochs (default: the recipe's)")
    parser.add_argument("--rows", default=BLOCKS, help="official row blocks, e.g. 0-49,1000-1499")
    parser.add_argument(
        "--synthetic", type=number_at_least(int, 1), help="score on this many fresh synthetic conditions instead"
    )
    parser.add_argument(
        "--temperatures", type=positive_numbers, default="1", help="prior temperatures for network only, e.g. 1,0.5"
    )
    parser.add_argument("--sampling", help="prior sampling for network only, e.g. independent,systematic")
    parser.add_argument(
        "--check-temperatures",
        type=positive_numbers,
        help="network + check with its prior at each of these temperatures, e.g. 1,1.5 (default: the main job's)",
    )
    parser.add_argument(
        "--check-spreads",
        type=positive_numbers,
        help="network + check with its extra proposals' noise at each of these stds (endpoint units), e.g. "
        "0.003,0.004 (default: the main job's); every pair with --check-temperatures is scored",
    )
    parser.add_argument("--refined", action="store_true", help="also network + refinement K=30, 20 LM steps")
    parser.add_argument(
        "--ema", type=decays, default=[], help="also score moving averages of the weights at these decays, e.g. 0.999"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, help="save the trained model here (a model.pt)")
    parser.add_argument("--quick", action="store_true", help="a tiny model, 1 epoch, 3 conditions (seconds)")
    args = parser.parse_args(argv)
    if args.ema and args.model:
        parser.error("--ema averages the weights of a run trained here; drop --model (or --ema)")
    return args


def decays(text) -> list[float]:
    """An argparse type: comma-separated EMA decays, each in (0, 1)."""
    values = positive_numbers(text)
    if any(v >= 1 for v in values):
        raise argparse.ArgumentTypeError(f"each decay must be below 1 (e.g. 0.999), got {text}")
    return values


def changes(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key.strip()] = yaml.safe_load(value)
    return out


def train(args) -> tuple[list[tuple[str, torch.nn.Module]], str]:
    config = Config(**{**(QUICK if args.quick else MAIN_JOB), **changes(args.set)})
    if args.epochs:
        config = config.replace(epochs=args.epochs)
    rows = 500 if args.quick else args.train_size
    spec = DataSpec(train_size=rows, val_conditions=20, **{**DATA, **changes(args.data)})
    started = time.perf_counter()
    train_data, val = spec.build(config)
    trainer = Trainer(config, train_data, val, device="cpu")
    averages = [AveragedModel(trainer.model, multi_avg_fn=get_ema_multi_avg_fn(d)) for d in args.ema]

    def average(*_):
        for a in averages:
            a.update_parameters(trainer.model)

    if averages:  # no hook, and no call per step, without --ema
        trainer.optimizer.register_step_post_hook(average)
    trainer.fit(callback=lambda row: print(progress(row), flush=True))
    seconds = time.perf_counter() - started
    if args.out:
        trainer.save(args.out, resumable=False)
    recipe = Config(**(QUICK if args.quick else MAIN_JOB)).to_dict()
    changed = {k: v for k, v in config.to_dict().items() if recipe[k] != v}
    cpu = sum(row["cpu_seconds"] for row in trainer.history) / 60
    note = f"trained here: {rows} rows, {config.epochs} epochs, {seconds / 60:.1f} min ({cpu:.1f} CPU-min)"
    note += f", changes {changed}"
    models = [(AS_TRAINED, trainer.model)] + [(f"EMA {d:g}", a.module) for d, a in zip(args.ema, averages)]
    return [(name, model.eval()) for name, model in models], note


def progress(row: dict) -> str:
    parts = [f"epoch {row['epoch']}", f"{row['seconds']:.0f} s", f"loss {row['loss']:.3g}"]
    for key in ("sigma", "val_valid_frac", "val_coverage_norm", "val_prior_valid"):
        if key in row:
            parts.append(f"{key} {row[key]:.3f}")
    return ", ".join(parts)


def score_block(model, x_true, y, functions, args) -> list[dict]:
    """bench/official.py's rows: network only at each prior temperature, then check (and refinement)."""
    sets = branches(y, functions, x_true=x_true)
    config, rows = model.config, []
    for how in args.sampling.split(",") if args.sampling else [config.prior_sampling]:
        for t in args.temperatures:
            # the model's own sampler: its prior sharpened by this factor, drawn this way
            model.config = config.replace(prior_temperature=config.prior_temperature * t, prior_sampling=how)
            row = score(model, x_true, y, functions, (Regime("network"),), branch_sets=sets)[0]
            rows.append({**row, "regime": f"network only (T={model.config.prior_temperature:g}, {how})"})
    model.config = config.replace(prior_sampling=how)  # check and refinement draw as the last --sampling
    _network, check, refined = regimes_for(config.latent)
    temperatures, spreads = args.check_temperatures or [check.temperature], args.check_spreads or [check.spread]
    checks = [replace(check, temperature=t, spread=s) for t in temperatures for s in spreads]
    regimes = (*checks, refined) if args.refined else tuple(checks)
    for row in score(model, x_true, y, functions, regimes, branch_sets=sets):
        rows.append({**row, "regime": f"{row['regime']} ({how})"})
    model.config = config
    rows[0]["prior_valid"] = prior_valid_mass(model, y, functions)
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine(f"{args.threads} torch thread(s)"))
    if args.model:
        models, note = [(AS_TRAINED, load_model(args.model, "cpu"))], str(args.model)
    else:
        models, note = train(args)
    functions = FunctionPair(models[0][1].config.functions)
    print(f"model: {note}")
    headers = ["rows", "regime", "gates", "valid", "overall RMSE", "coverage_norm", "median distance", "prior valid"]
    lines, goals = [], []
    blocks = [(0, 2)] if args.quick else row_blocks(args.rows)
    sets = fresh_conditions(args.synthetic, functions) if args.synthetic else official_rows(blocks, functions)
    for (label, x_true, y), (weights, model) in itertools.product(sets, models):
        block = score_block(model, x_true, y, functions, args)
        shown = label if len(models) == 1 else f"{label}, {weights}"
        for row in block:
            distance = f"{row['median_distance']:.4f}" if "median_distance" in row else ""
            prior = f"{row['prior_valid']:.3f}" if "prior_valid" in row else ""
            gates = "pass" if row["gates_pass"] else "FAIL"
            numbers = [f"{row[k]:.3f}" for k in ("valid_frac", "overall_rmse", "coverage_norm")]
            lines.append([shown, row["regime"], gates, *numbers])
            lines[-1] += [distance, prior]
        if weights == AS_TRAINED:
            goals.append((label.replace(" ", "_"), block[0]))
    table(headers, lines)
    print(load())
    for label, net in goals:
        result(f"network_valid_frac_{label}", net["valid_frac"], ">= 0.6", net["valid_frac"] >= 0.6)
        result(f"network_coverage_norm_{label}", net["coverage_norm"], ">= 0.5", net["coverage_norm"] >= 0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
