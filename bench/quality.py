"""Quality of a trained CVAE in the three regimes, against the no-learning multi-start baseline.

For the first N official validation conditions (never trained on; synthetic ones when
../shared/twobirds is absent), S = 30 samples each (cvae/regimes.py):

- network only: S draws from the model as they are (the challenge's setting);
- network + check: K draws, those whose recomputed y is valid kept, S spread-out ones selected, no solver
  (a categorical model's K proposals are its components in order of prior weight, then draws);
- network + refinement: K proposals, each refined by Levenberg-Marquardt on its 4 line endpoints, S selected;
- uniform + refinement: the same solver and selection started from K uniformly random monotone lines.

Each regime reports the challenge gates, valid fraction, overall RMSE, coverage and coverage_norm
(cvae.metrics.evaluate, the numbers scripts/score.py prints); a categorical model also reports its
prior's mass on valid components. The goals of issue 11 end the output as
`RESULT <name> <value> goal <goal> met|missed` lines.

    .venv/bin/python bench/quality.py --model runs/demo/final/model.pt
    .venv/bin/python bench/quality.py --quick          # seconds: tiny model, 3 conditions
    .venv/bin/python bench/quality.py --model M --plot docs/quality_coverage.png

Without --model a model is trained here first (quick: a tiny one for ~1 s, only to exercise
the code path; otherwise --train-epochs epochs of the configuration in TRAIN_CONFIG), and
the output says so: its network numbers are then not those of the search's model.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cvae.config import Config
from cvae.data import DataSpec, load_challenge, make_dataset
from cvae.functions import FunctionPair
from cvae.metrics import branches, coverage, evaluate
from cvae.regimes import Regime
from cvae.sampling import generate, prior_valid_mass
from cvae.train import Trainer, load_model

REPO = Path(__file__).resolve().parents[1]
OFFICIAL = REPO.parent / "shared" / "twobirds" / "validation_dataset.pt"
# the configuration trained when no --model is given (the best family measured in docs/quality.md),
# on TRAIN_DATA: lines over the whole box, each condition's solutions drawn uniformly
TRAIN_CONFIG = dict(
    latent="categorical",
    components=48,
    hidden=256,
    depth=3,
    sigma=0.01,
    sigma_start=0.1,
    sigma_anneal=10,
    wy=1.0,
    wy_delay=10,
    wv=1.0,
    batch_size=64,
    lr_schedule="cosine",
)
TRAIN_DATA = dict(lines="uniform", x_targets="all_branches")
QUICK_CONFIG = dict(latent="categorical", components=8, hidden=32, depth=1, wy=1.0, wv=1.0)
KEYS = ("gates_pass", "valid_frac", "overall_rmse", "coverage", "coverage_norm")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a trained model.pt (e.g. runs/demo/final/model.pt)")
    parser.add_argument("--quick", action="store_true", help="3 conditions, 3 refinement steps, tiny model (seconds)")
    parser.add_argument("--conditions", type=int, help="first N validation conditions (default 50; quick 3)")
    parser.add_argument("--samples", type=int, default=30, help="samples per condition (default 30)")
    parser.add_argument("--proposals", default="30,300,3000", help="K values, comma separated")
    parser.add_argument("--refine-steps", type=int, help="Levenberg-Marquardt steps (default 20; quick 3)")
    parser.add_argument("--train-epochs", type=int, default=10, help="epochs when no --model (default 10)")
    parser.add_argument(
        "--temperature", type=float, default=2.0, help="z scale of a Gaussian model's refined proposals (default 2)"
    )
    parser.add_argument("--mix", type=float, help="also measure mixed proposals with this network share (e.g. 0.2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--plot", type=Path, help="write coverage per condition vs uniform as a PNG here")
    parser.add_argument("--json", type=Path, help="write all measured rows as JSON here")
    return parser.parse_args(argv)


def conditions(n: int, functions: FunctionPair) -> tuple[torch.Tensor, torch.Tensor, str]:
    if OFFICIAL.is_file():
        x, y = load_challenge(OFFICIAL)
        return x[:n], y[:n], f"the first {n} official validation conditions"
    x, y = make_dataset(n, functions, seed=2026)
    return x, y, f"{n} synthetic conditions (../shared/twobirds is absent)"


def get_model(args, functions):
    if args.model is not None:
        return load_model(args.model, "cpu"), f"{args.model}"
    quick = args.quick
    config = Config(
        **(QUICK_CONFIG if quick else TRAIN_CONFIG), epochs=1 if quick else args.train_epochs, seed=args.seed
    )
    rows = 1000 if quick else 20000
    train, _ = DataSpec(train_size=rows, val_conditions=1, seed=args.seed, **TRAIN_DATA).build(functions)
    trainer = Trainer(config, train, None, device="cpu")
    started = time.perf_counter()
    trainer.fit()
    what = "a tiny model" if quick else "a model"
    note = (
        f"{what} trained here ({config.epochs} epochs on {rows} synthetic rows ({TRAIN_DATA}) in "
        f"{time.perf_counter() - started:.0f} s; no --model given): its network numbers are not the search's"
    )
    return trainer.model.eval(), note


def measure(model, y, functions, branch_sets, source, k, steps, samples, seed, temperature=1.0, mix=0.5):
    generator = torch.Generator().manual_seed(seed)
    noise = model.config.noise if model is not None else "prior"
    started = time.perf_counter()
    x = generate(
        model,
        y,
        functions,
        samples=samples,
        proposals=k,
        refine_steps=steps,
        proposals_from=source,
        generator=generator,
        noise=noise,
        temperature=temperature,
        mix=mix,
    )
    seconds = time.perf_counter() - started
    row = {key: evaluate(x, y, functions, branch_sets=branch_sets)[key] for key in KEYS}
    row.update(seconds=seconds)
    return row, x


def result(name: str, value: float, goal: float, met: bool) -> str:
    return f"RESULT {name} {value:.4f} goal {goal:g} {'met' if met else 'missed'}"


def plot(path: Path, per_condition: dict[str, torch.Tensor], n_branches: torch.Tensor) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = torch.argsort(n_branches, stable=True)
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=80)
    index = torch.arange(len(order))
    styles = {"uniform": ("o", "tab:gray"), "model": ("x", "tab:red"), "mixed": ("^", "tab:blue")}
    for label, values in per_condition.items():
        marker, color = next((s for key, s in styles.items() if label.startswith(key)), ("s", "tab:green"))
        fill = "none" if "3000" in label else color
        colours = {"c": color} if marker == "x" else {"facecolors": fill, "edgecolors": color}  # "x" has no face
        ax.scatter(index, values[order], s=18, marker=marker, label=label, **colours)
    ax.set_xlabel("condition (sorted by number of branches)")
    ax.set_ylabel("hits / min(branches, 30)")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("coverage per condition: network + refinement vs uniform multi-start", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def plan(args, ks: list[int], steps: int, model) -> list[tuple[str, Regime | None]]:
    """(label, regime) rows: network only, then for each K check, refined and uniform (and mixed on request)."""
    gaussian = model.config.latent == "gaussian"
    t = args.temperature if gaussian else 1.0  # a categorical model's proposals are its components
    rows = [("network", Regime("network"))]
    for k in ks:
        if k > args.samples:  # with K = S a check keeps every draw: that is network only
            rows.append(("check", Regime("check", k)))
        rows.append(("refined", Regime("refined", k, steps, t)))
        rows += [("uniform", Regime("uniform", k, steps))]
        if args.mix is not None:
            rows.append(("mixed", None))
    return rows


def run_row(kind, regime, model, y, functions, args, k, steps):
    generator = torch.Generator().manual_seed(args.seed)
    started = time.perf_counter()
    if regime is None:  # mixed proposals: not a regime of their own, a variant of refinement
        x = generate(
            model, y, functions, args.samples, k, steps, "mixed", generator, temperature=args.temperature, mix=args.mix
        )
        label = f"mixed {args.mix:g} + refinement (K={k}, {steps} LM steps)"
    else:
        x = regime.generate(model, y, functions, args.samples, generator)
        label = regime.label
    return x, label, time.perf_counter() - started


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    n = args.conditions or (3 if args.quick else 50)
    steps = args.refine_steps if args.refine_steps is not None else (3 if args.quick else 20)
    ks = [int(k) for k in args.proposals.split(",")]
    model, note = get_model(args, FunctionPair())
    functions = FunctionPair(model.config.functions)
    x_true, y, source = conditions(n, functions)
    branch_sets = branches(y, functions, x_true=x_true)
    counts = torch.tensor([len(b) for b in branch_sets])
    print(f"model: {note} ({model.config.latent} latent)")
    print(
        f"conditions: {source}; branches per condition median {counts.median().item()}, "
        f"max {counts.max().item()}; {args.samples} samples each; {steps} refinement steps"
    )
    mass = describe_prior(model, y, functions, args)
    rows, per_condition = measure_rows(args, ks, steps, model, y, functions, branch_sets, counts)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {"model": note, "conditions": source, "prior_valid_mass": mass, "rows": rows}
        args.json.write_text(json.dumps(document, indent=1))
    if args.plot is not None and per_condition:
        keep = {k: v for k, v in per_condition.items() if "K=3000" not in k or k.startswith("uniform")}
        plot(args.plot, keep, counts)
        print(f"plot: {args.plot}")
    print_results(rows, ks)
    return 0


def describe_prior(model, y, functions, args) -> float:
    """The categorical prior's mass on valid components (printed and returned); NaN for a Gaussian latent."""
    if model.config.latent != "categorical":
        print(f"network proposals for refinement: z temperature {args.temperature}")
        return math.nan
    mass = prior_valid_mass(model, y, functions)
    print(
        f"prior mass on valid components: {mass:.3f} (mean over conditions of p(c | y) on components with RMSE < 0.1)"
    )
    return mass


def measure_rows(args, ks, steps, model, y, functions, branch_sets, counts) -> tuple[list[dict], dict]:
    """One row per planned regime, printed as it is measured; with --plot, each plotted regime's hits per
    condition as a share of its reachable branches."""
    rows, per_condition = [], {}
    print(f"{'regime':<48}{'gates':>6}{'valid':>8}{'rmse':>8}{'cover':>8}{'c_norm':>8}{'sec':>7}")
    for kind, regime in plan(args, ks, steps, model):
        k = regime.proposals if regime is not None and regime.proposals else args.samples
        if regime is None:
            k = ks[sum(1 for r in rows if r["kind"] == "mixed")]
        x, label, seconds = run_row(kind, regime, model, y, functions, args, k, steps)
        row = {key: evaluate(x, y, functions, branch_sets=branch_sets)[key] for key in KEYS}
        refine_steps = 0 if kind in ("network", "check") else steps
        row.update(regime=label, kind=kind, proposals=k, refine_steps=refine_steps, seconds=seconds)
        rows.append(row)
        print(
            f"{label:<48}{'pass' if row['gates_pass'] else 'FAIL':>6}{row['valid_frac']:>8.3f}"
            f"{row['overall_rmse']:>8.3f}{row['coverage']:>8.3f}{row['coverage_norm']:>8.3f}{seconds:>7.1f}",
            flush=True,
        )
        if args.plot is not None and (
            kind == "network" or (kind in ("check", "refined", "uniform") and k in (300, 3000))
        ):
            cover = coverage(x, y, functions, branch_sets=branch_sets)
            per_condition[label] = cover["hits"] / counts.clamp(min=1, max=args.samples)
    return rows, per_condition


def print_results(rows: list[dict], ks: list[int]) -> None:
    """The RESULT lines of the goals, each regime apart."""

    def get(kind, k=None):
        return next((r for r in rows if r["kind"] == kind and (k is None or r["proposals"] == k)), None)

    net = get("network")
    print(result("network_gates_pass", net["gates_pass"], 1, net["gates_pass"] == 1))
    print(result("network_valid_frac", net["valid_frac"], 0.8, net["valid_frac"] >= 0.8))
    print(result("network_coverage_norm", net["coverage_norm"], 0.6, net["coverage_norm"] >= 0.6))
    print(result("network_valid_frac_long_term", net["valid_frac"], 0.95, net["valid_frac"] >= 0.95))
    check = get("check", 300) or get("check")
    k = check["proposals"]
    print(result(f"check_k{k}_gates_pass", check["gates_pass"], 1, check["gates_pass"] == 1))
    print(result(f"check_k{k}_valid_frac", check["valid_frac"], 0.99, check["valid_frac"] >= 0.99))
    print(result(f"check_k{k}_coverage_norm", check["coverage_norm"], 0.75, check["coverage_norm"] >= 0.75))
    for k, goal in ((30, 0.95), (300, 0.98)):
        mine = get("refined", k)
        if mine is not None:
            print(result(f"refined_k{k}_coverage_norm", mine["coverage_norm"], goal, mine["coverage_norm"] >= goal))
    top = max(ks)
    far = get("uniform", top)
    for k in (30, 300):
        mine = get("refined", k)
        if mine is not None and far is not None and top > k:
            gain = mine["coverage_norm"] - far["coverage_norm"]
            print(result(f"refined_k{k}_coverage_norm_minus_uniform_k{top}", gain, 0, gain > 0))


if __name__ == "__main__":
    sys.exit(main())
