import pickle

import pytest
import torch
from torch.utils.data import TensorDataset

from cvae.data import DataFileError, DataSpec, load_challenge, make_dataset, save_submission, synthetic_lines
from cvae.functions import FunctionPair


def _endpoints(x):
    return {"x0 start": x[:, 0, 0], "x0 end": x[:, -1, 0], "x1 start": x[:, 0, 1], "x1 end": x[:, -1, 1]}


def test_synthetic_lines_are_exact_monotone_lines_in_the_domain():
    x = synthetic_lines(2000, seed=3)
    assert x.shape == (2000, 50, 2)
    assert x.dtype == torch.float32
    assert (x >= 0.1 - 1e-6).all()
    assert (x <= 1.0 + 1e-6).all()
    assert (x[:, 1:, 0] <= x[:, :-1, 0]).all()
    assert (x[:, 1:, 1] >= x[:, :-1, 1]).all()
    t = torch.linspace(0, 1, 50)
    line = x[:, :1] + (x[:, -1:] - x[:, :1]) * t[None, :, None]
    assert torch.allclose(x, line, atol=1e-6)


def test_synthetic_lines_are_seeded():
    assert torch.equal(synthetic_lines(10, seed=1), synthetic_lines(10, seed=1))
    assert not torch.equal(synthetic_lines(10, seed=1), synthetic_lines(10, seed=2))


def test_make_dataset_applies_the_functions():
    pair = FunctionPair(["sin(5*x0 + 3*x1)", "cos(4*x0 + 8*x1)"])
    x, y = make_dataset(100, pair, seed=0)
    assert torch.allclose(y[..., 0], torch.sin(5 * x[..., 0] + 3 * x[..., 1]), atol=1e-5)
    assert torch.allclose(y[..., 1], torch.cos(4 * x[..., 0] + 8 * x[..., 1]), atol=1e-5)


@pytest.mark.needs_shared
def test_synthetic_endpoints_match_the_official_distribution(shared):
    from scipy.stats import ks_2samp

    real, _ = load_challenge(shared / "validation_dataset.pt")
    fake = synthetic_lines(50_000, seed=0)
    for name, values in _endpoints(real).items():
        statistic = ks_2samp(values.numpy(), _endpoints(fake)[name].numpy()).statistic
        assert statistic < 0.05, f"{name}: KS {statistic:.3f}"


@pytest.mark.needs_shared
def test_loads_the_official_validation_file(shared):
    x, y = load_challenge(shared / "validation_dataset.pt")
    assert x.shape == y.shape == (3000, 50, 2)
    assert torch.allclose(FunctionPair()(x.double()).float(), y, atol=1e-4)


def test_roundtrip_of_a_submission(tmp_path):
    x = synthetic_lines(12).view(4, 3, 50, 2)
    y = torch.rand(4, 50, 2)
    path = save_submission(tmp_path / "sub.pt", x, y)
    rows_x, rows_y = load_challenge(path)
    assert rows_x.shape == (12, 50, 2)
    assert torch.equal(rows_x.view(4, 3, 50, 2), x)
    assert torch.equal(rows_y[3], y[1])
    assert torch.equal(rows_y[5], y[1])
    assert torch.equal(rows_y[6], y[2])
    raw = torch.load(path, weights_only=False)
    assert isinstance(raw, TensorDataset)
    assert raw.tensors[0].shape == (12, 1, 50, 2)


def test_loads_the_list_of_pairs_variant(tmp_path):
    pairs = [(torch.rand(1, 50, 2), torch.rand(1, 50, 2)) for _ in range(5)]
    torch.save(pairs, tmp_path / "pairs.pt")
    x, y = load_challenge(tmp_path / "pairs.pt")
    assert x.shape == (5, 50, 2)
    assert torch.equal(y[2], pairs[2][1][0])


class _Exploit:
    """A pickle that, when loaded, creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_refuses_a_pickle_carrying_a_callable_without_running_it(tmp_path):
    marker = tmp_path / "pwned"  # the test's own folder: not a name in /tmp that other runs share
    path = tmp_path / "evil.pt"
    torch.save({"x": _Exploit(marker), "y": torch.zeros(1)}, path, pickle_module=pickle)
    with pytest.raises(DataFileError, match="refused to load"):
        load_challenge(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (TensorDataset(torch.rand(3, 1, 50, 3), torch.rand(3, 1, 50, 3)), "shape"),
        ({"x": torch.rand(3, 1, 50, 2), "y": torch.rand(4, 1, 50, 2)}, "differ"),
        (TensorDataset(torch.full((2, 1, 50, 2), float("nan")), torch.rand(2, 1, 50, 2)), "NaN"),
        ({"a": torch.zeros(1)}, "expected TensorDataset"),
    ],
)
def test_rejects_bad_files_with_one_line(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    torch.save(content, path)
    with pytest.raises(DataFileError, match=message) as err:
        load_challenge(path)
    assert "\n" not in str(err.value)


def test_rejects_a_missing_or_garbage_file(tmp_path):
    with pytest.raises(DataFileError, match="no such file"):
        load_challenge(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataFileError):
        load_challenge(tmp_path / "junk.pt")


def test_data_spec_builds_disjoint_train_and_validation():
    train, val = DataSpec(train_size=64, val_conditions=8, seed=5).build(FunctionPair())
    assert train[0].shape == (64, 50, 2)
    assert val[0].shape == (8, 50, 2)
    assert not any(torch.equal(v, t) for v in val[0] for t in train[0])
    with pytest.raises(ValueError, match="trainsize: unknown key; allowed are train_size, "):
        DataSpec.from_dict({"trainsize": 3})


def test_uniform_lines_fill_the_whole_box_and_only_training_uses_them():
    x = synthetic_lines(4000, seed=2, distribution="uniform")
    assert (x >= 0).all()
    assert (x <= 1).all()
    assert (x[:, 1:, 0] <= x[:, :-1, 0]).all()
    assert (x[:, 1:, 1] >= x[:, :-1, 1]).all()
    assert (x[:, -1, 0] < 0.1).float().mean() > 0.1  # official-like data never goes below 0.1
    train, val = DataSpec(train_size=2000, val_conditions=50, lines="uniform").build(FunctionPair())
    assert train[0].min() < 0.05
    assert val[0].min() >= 0.1 - 1e-6
    with pytest.raises(ValueError, match="lines: 'box' is not one of official, uniform"):
        DataSpec.from_dict({"lines": "box"})


def test_uniform_branch_targets_draw_every_solution_of_a_condition_equally_often():
    from cvae.data import uniform_branch_targets
    from cvae.lines import endpoints_from_lines
    from cvae.metrics import branches

    functions = FunctionPair()
    x, y = make_dataset(20, functions, seed=4)
    row = max(range(20), key=lambda i: len(branches(y[i : i + 1], functions, x_true=x[i : i + 1])[0]))
    solutions = branches(y[row : row + 1], functions, x_true=x[row : row + 1])[0].float()
    assert len(solutions) >= 5
    repeats = 400 * len(solutions)
    targets = uniform_branch_targets(x[row].expand(repeats, 50, 2), y[row].expand(repeats, 50, 2), functions)
    assert (functions(targets.double()) - y[row].double()).abs().max() < 1e-4  # each one is exact
    nearest = (endpoints_from_lines(targets)[:, None] - solutions[None]).abs().amax(-1).argmin(1)
    counts = torch.bincount(nearest, minlength=len(solutions))
    assert counts.min() > 300, counts
    assert counts.max() < 500, counts  # 400 expected for each branch
    with pytest.raises(ValueError, match="x_targets=uniform_branch or all_branches needs enumerable solutions"):
        uniform_branch_targets(x, y, FunctionPair(["x0 + x1", "x0 * x1"]))
    with pytest.raises(ValueError, match="x_targets: 'all' is not one of given, uniform_branch, all_branches"):
        DataSpec.from_dict({"x_targets": "all"})
