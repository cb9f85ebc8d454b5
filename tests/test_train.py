import math

import pytest
import torch

from cvae.config import Config
from cvae.data import DataSpec
from cvae.functions import FunctionPair
from cvae.train import Trainer, load_checkpoint, load_model


@pytest.fixture(scope="module")
def data():
    return DataSpec(train_size=512, val_conditions=6, seed=0).build(FunctionPair())


def _config(**changes):
    base = dict(model="mlp", hidden=32, latent_dim=4, batch_size=64, epochs=4, lr=3e-3, val_samples=4)
    return Config(**{**base, **changes})


def test_training_lowers_the_loss(data):
    # wy is small: the raw y-term gradient (~50x larger, cos(49 x0 ...)) swamps a 5-epoch run
    for model in ("mlp", "conv"):
        trainer = Trainer(_config(model=model, epochs=5, wy=0.01), *data)
        result = trainer.fit()
        losses = [row["loss"] for row in result["history"]]
        assert result["status"] == "finished"
        assert result["epochs"] == 5
        assert losses[-1] < 0.7 * losses[0], losses


def test_wy_delay_trains_without_the_y_term_first(data):
    # wx = beta = 0: the total is the y-term alone, so it is exactly 0 until wy switches on
    rows = Trainer(_config(epochs=3, wx=0.0, beta=0.0, wy=1.0, wy_delay=2), *data).fit()["history"]
    assert [r["loss"] for r in rows[:2]] == [0.0, 0.0]
    assert rows[2]["loss"] == pytest.approx(rows[2]["y_loss"])
    assert rows[2]["loss"] > 0.01


def test_each_epoch_reports_losses_and_validation_metrics(data):
    rows = []
    Trainer(_config(epochs=2), *data).fit(callback=rows.append)
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("loss", "kld", "x_loss", "y_loss", "val_score", "val_valid_frac", "val_overall_rmse"):
        assert all(math.isfinite(r[key]) for r in rows), key


def test_callback_can_stop_the_run(data):
    trainer = Trainer(_config(epochs=5), *data)
    result = trainer.fit(callback=lambda row: row["epoch"] >= 2)
    assert result["status"] == "stopped"
    assert result["epochs"] == 2


@pytest.mark.parametrize("optimizer", ["Adam", "RMSprop", "SGD"])
def test_optimizers_with_weight_decay(data, optimizer):
    trainer = Trainer(_config(optimizer=optimizer, weight_decay=1e-4, epochs=1), *data)
    assert trainer.fit()["status"] == "finished"
    assert type(trainer.optimizer).__name__ == optimizer


def test_diverging_run_stops_with_a_clear_status_and_no_nan(data):
    trainer = Trainer(_config(optimizer="SGD", lr=1e12, epochs=6), *data)
    result = trainer.fit()
    assert result["status"] == "diverged"
    assert result["epochs"] < 6
    assert result["history"][-1]["loss"] == float("inf")
    assert not any(math.isnan(v) for row in result["history"] for v in row.values() if isinstance(v, float))


def test_same_seed_same_run(data):
    a = Trainer(_config(epochs=2), *data).fit()["history"]
    b = Trainer(_config(epochs=2), *data).fit()["history"]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]


def test_checkpoint_resumes_bit_for_bit(data, tmp_path):
    straight = Trainer(_config(epochs=4), *data)
    straight.fit()
    first = Trainer(_config(epochs=4), *data)
    first.fit(epochs=2)
    first.save(tmp_path / "ckpt.pt")
    resumed = Trainer.restore(tmp_path / "ckpt.pt", *data)
    assert resumed.epoch == 2
    resumed.fit()
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]
    for p, q in zip(resumed.model.parameters(), straight.model.parameters()):
        assert torch.equal(p, q)


def test_checkpoint_loads_without_unpickling_code(data, tmp_path):
    trainer = Trainer(_config(epochs=1, head="lines"), *data)
    trainer.fit()
    path = trainer.save(tmp_path / "model.pt")
    state = load_checkpoint(path)  # weights_only=True inside
    assert state["epoch"] == 1
    assert state["config"]["head"] == "lines"
    model = load_model(path)
    y = data[1][1]
    assert torch.allclose(model.decode(torch.zeros(6, 4), y), trainer.model.eval().decode(torch.zeros(6, 4), y))


def test_device_agnostic_on_cpu_and_cuda_when_present(data):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        trainer = Trainer(_config(epochs=1), *data, device=device)
        assert trainer.fit()["status"] == "finished"
        assert next(trainer.model.parameters()).device.type == device


def test_refined_validation_scores_the_samples_as_starts(data):
    rows = []
    Trainer(_config(epochs=1, val_refine_steps=5), *data).fit(callback=rows.append)
    row = rows[0]
    for key in ("val_refined_score", "val_refined_valid_frac", "val_refined_coverage_norm"):
        assert math.isfinite(row[key]), key
    # Levenberg-Marquardt only accepts steps that lower a sample's residual.
    assert row["val_refined_overall_rmse"] <= row["val_overall_rmse"] + 1e-6


def test_a_trainer_leaves_the_global_random_state_alone(tiny_config):
    config = Config(**tiny_config)
    train, val = DataSpec(train_size=64, val_conditions=2).build(config)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = Trainer(config, train, val, "cpu")
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(999)  # another global state: the same initial weights all the same
    second = Trainer(config, train, val, "cpu")
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
