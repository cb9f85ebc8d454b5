"""Trainer.compile_loss: torch.compile'd categorical loss, built before training without moving the model; a
broken compiler leaves training exactly as it is without it. Slow: each compile takes tens of seconds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from cvae.config import Config
from cvae.data import DataSpec
from cvae.train import Trainer

pytestmark = pytest.mark.slow

CONFIG = dict(latent="categorical", hidden=32, depth=2, components=8, batch_size=64, wy=1.0, wy_delay=1, wv=0.5)
CONFIG.update(epochs=3, seed=0, condition_features="y_arccos")

TRAIN_BOTH = f"""
import json, sys
import torch._dynamo
from cvae.config import Config
from cvae.data import DataSpec
from cvae.train import Trainer
config = Config(**{CONFIG!r})
train, _ = DataSpec(train_size=256, val_conditions=4, lines="official").build(config)
compiled, eager = Trainer(config, train), Trainer(config, train)
why_not = compiled.compile_loss()
with torch._dynamo.config.patch(error_on_recompile=True):  # compile_loss built every graph the epochs use
    losses = [[row["loss"] for row in t.fit()["history"]] for t in (compiled, eager)]
print(json.dumps({{"why_not": why_not, "losses": losses}}))
"""


def train_both(tmp_path, **env) -> dict:
    """A compiled and an eager trainer of the same configuration in a fresh process with its own compile cache
    (so the compiler really runs): compile_loss's answer and both trainers' losses per epoch."""
    cache = {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    done = subprocess.run(
        [sys.executable, "-c", TRAIN_BOTH], env={**os.environ, **cache, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None, reason="no C++ compiler for torch.compile")
def test_the_compiled_loss_trains_as_the_eager_one_without_compiling_again(tmp_path):
    run = train_both(tmp_path)
    assert run["why_not"] is None
    compiled, eager = run["losses"]
    assert len(compiled) == len(eager) == 3
    assert compiled == pytest.approx(eager, rel=1e-3)  # fused float32 arithmetic: the same up to rounding


def test_compile_loss_builds_without_moving_the_model():
    config = Config(**CONFIG)
    train, _ = DataSpec(train_size=64, val_conditions=4, lines="official").build(config)
    trainer = Trainer(config, train)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.compile_loss()  # compiled or not, no step and no gradient left behind
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert all(p.grad is None for p in trainer.model.parameters())
    assert not trainer.optimizer.state


def test_a_broken_compiler_leaves_training_as_without_it(tmp_path):
    run = train_both(tmp_path, CXX=str(tmp_path / "no-such-compiler"))
    assert run["why_not"].startswith("torch.compile failed (")
    compiled, eager = run["losses"]
    assert compiled == eager  # the eager loss was kept: the same numbers exactly
