"""Samples/s of cvae's training loop against a minimal hand-written PyTorch loop.

Same conv CVAE, same data, same batch size, one process; the two loops alternate
over several repeats so machine noise hits both alike. Goal: ratio >= 0.95.

    .venv/bin/python bench/train_throughput.py [--quick] [--threads 1] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cvae.config import Config
from cvae.data import make_dataset
from cvae.functions import FunctionPair
from cvae.model import CVAE
from cvae.train import Trainer


def hand_written_epoch(model, optimizer, x, y, functions, batch_size):
    """What a person would write from scratch: shuffle, slice, loss, step."""
    model.train()
    order = torch.randperm(x.shape[0])
    for start in range(0, x.shape[0], batch_size):
        index = order[start : start + batch_size]
        xb, yb = x[index], y[index]
        mu, logvar = model.encode(xb, yb)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        x_hat = model.decode(z, yb)
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1).mean()
        loss = kld + F.huber_loss(x_hat, xb) + F.mse_loss(functions(x_hat), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small run that finishes in seconds")
    parser.add_argument("--rows", type=int, default=8192, help="training rows per epoch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 = per-core figure)")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.repeats = 1024, 2
    torch.set_num_threads(args.threads)
    functions = FunctionPair()
    x, y = make_dataset(args.rows, functions, seed=0)
    config = Config(model="conv", batch_size=args.batch_size)

    trainer = Trainer(config, (x, y), device="cpu")
    torch.manual_seed(0)
    model = CVAE(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    trainer.train_epoch()  # warm-up both
    hand_written_epoch(model, optimizer, x, y, functions, args.batch_size)

    rates = {"cvae.Trainer": [], "hand-written": []}
    for _ in range(args.repeats):
        started = time.perf_counter()
        trainer.train_epoch()
        rates["cvae.Trainer"].append(args.rows / (time.perf_counter() - started))
        started = time.perf_counter()
        hand_written_epoch(model, optimizer, x, y, functions, args.batch_size)
        rates["hand-written"].append(args.rows / (time.perf_counter() - started))

    print(
        f"# conv CVAE, batch {args.batch_size}, {args.rows} rows, {args.threads} thread(s), "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}"
    )
    print("| loop | min samples/s | median | max |")
    print("|---|---|---|---|")
    for name, values in rates.items():
        print(f"| {name} | {min(values):,.0f} | {statistics.median(values):,.0f} | {max(values):,.0f} |")
    ratio = statistics.median(rates["cvae.Trainer"]) / statistics.median(rates["hand-written"])
    print(f"RESULT train_throughput_ratio {ratio:.3f} goal 0.95 {'met' if ratio >= 0.95 else 'missed'}")
    return ratio


if __name__ == "__main__":
    main()
