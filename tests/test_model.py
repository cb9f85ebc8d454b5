import itertools

import pytest
import torch

from cvae.config import Config, ConfigError
from cvae.functions import FunctionPair
from cvae.losses import beta_at, cvae_loss, kld
from cvae.model import CVAE


@pytest.mark.parametrize(
    ("model", "head", "sees_y"), list(itertools.product(["conv", "mlp"], ["points", "lines"], [False, True]))
)
def test_every_variant_maps_shapes(model, head, sees_y):
    config = Config(model=model, head=head, encoder_sees_y=sees_y, latent_dim=5, hidden=16, depth=3)
    net = CVAE(config)
    x, y = torch.rand(7, 50, 2), torch.rand(7, 50, 2)
    x_hat, mu, logvar = net(x, y)
    assert x_hat.shape == (7, 50, 2)
    assert mu.shape == logvar.shape == (7, 5)


def test_lines_head_is_monotone_inside_the_domain_whatever_the_weights():
    torch.manual_seed(0)
    net = CVAE(Config(model="mlp", head="lines", hidden=16))
    for p in net.parameters():
        p.data.mul_(50)  # extreme weights
    x_hat = net.decode(torch.randn(64, 8) * 10, torch.rand(64, 50, 2))
    assert (x_hat >= 0).all()
    assert (x_hat <= 1).all()
    assert (x_hat[:, 1:, 0] <= x_hat[:, :-1, 0]).all()
    assert (x_hat[:, 1:, 1] >= x_hat[:, :-1, 1]).all()


def test_kld_formula_and_free_bits():
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    assert kld(mu, logvar).item() == pytest.approx(0.5)
    assert kld(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0
    assert kld(torch.zeros(3, 4), torch.zeros(3, 4), free_bits=0.1).item() == pytest.approx(0.4)


def test_beta_warmup_ramps_linearly():
    config = Config(beta=2.0, beta_warmup=4)
    assert [beta_at(config, e) for e in range(5)] == [0.5, 1.0, 1.5, 2.0, 2.0]


def test_y_loss_gradient_reaches_the_model_parameters():
    config = Config(model="conv", wx=0.0, beta=0.0, wy=1.0)
    net = CVAE(config)
    x, y = torch.rand(8, 50, 2), torch.rand(8, 50, 2)
    x_hat, mu, logvar = net(x, y)
    total, parts = cvae_loss(x_hat, x, y, mu, logvar, FunctionPair(), config, beta=0.0)
    total.backward()
    grads = [p.grad.abs().sum().item() for p in net.decoder.parameters() if p.grad is not None]
    assert grads
    assert sum(grads) > 0
    assert parts["y_loss"].item() > 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"optimizer": "Adagrad"}, "optimizer"),
        ({"model": "transformer"}, "model"),
        ({"lr": 0}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"beta": -1}, "beta"),
        ({"functions": ["cos(x0)", "os.system(1)"]}, "'os'"),
    ],
)
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        Config(**changes)


def test_config_from_dict_rejects_unknown_keys_and_round_trips():
    with pytest.raises(ConfigError, match="lr_rate: unknown key; allowed are functions, "):
        Config.from_dict({"lr_rate": 1})
    config = Config.from_dict({"optimizer": "rmsprop", "head": "lines"})
    assert config.optimizer == "RMSprop"
    assert Config.from_dict(config.to_dict()) == config
