"""Bad input found by a machine: hypothesis builds search files, function expressions and `.pt` files.

Property: every input either parses to something usable or ends in one `UserError` (the commands print it as
one line and exit 2), quickly (the profile's deadline: 2 s an example) and before Ray or any training; never
another exception (a traceback). The fast tier runs a few dozen examples each; `pytest tests/test_fuzz.py
--hypothesis-profile=long` runs 10,000 (docs/reliability.md).
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch.utils.data import TensorDataset

from cvae.config import Config
from cvae.data import load_challenge
from cvae.errors import UserError
from cvae.functions import FunctionPair
from search.spec import parse_search_config


def _paths(tree, prefix=()):
    """Every key path into a nested search file (dicts and lists)."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        yield (*prefix, key)
        yield from _paths(value, (*prefix, key))


ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-5, 5), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@st.composite
def broken_search_files(draw, base: dict):
    """The valid smoke search file with one key, type, range or nesting broken."""
    raw = copy.deepcopy(base)
    path = draw(st.sampled_from(list(_paths(raw))))
    parent = raw
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["delete", "replace", "unknown_key", "wrap", "negate"]))
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "replace":
        parent[last] = draw(ANY_VALUE)
    elif action == "unknown_key" and isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=10))] = draw(ANY_VALUE)
    elif action == "wrap":
        parent[last] = [parent[last]] if draw(st.booleans()) else {"value": parent[last]}
    elif isinstance(parent[last], (int, float)) and not isinstance(parent[last], bool):
        parent[last] = draw(st.sampled_from([-parent[last], 0, 10**18, float("nan"), float("inf")]))
    return raw


@st.composite
def valid_search_files(draw, base: dict):
    raw = copy.deepcopy(base)
    max_t = draw(st.integers(1, 60))
    low = draw(st.floats(1e-6, 1e-2))
    raw["search"]["num_samples"] = draw(st.integers(1, 5000))
    raw["asha"].update(max_t=max_t, grace_period=draw(st.integers(1, max_t)))
    raw["space"]["lr"] = {"type": "loguniform", "low": low, "high": low * draw(st.floats(1.0, 1e3))}
    raw["start_points"] = []
    return raw


def _outcome(work):
    """(result, None), or (None, the UserError it raised, checked to be one line); any other exception fails."""
    try:
        return work(), None
    except UserError as err:
        error = err
    assert str(error).strip(), type(error).__name__
    assert "\n" not in str(error).strip(), str(error)
    return None, error


@pytest.fixture(scope="module")
def smoke(repo):
    return yaml.safe_load((repo / "search" / "configs" / "smoke.yaml").read_text())


def test_search_files_with_one_thing_broken_end_in_one_user_error(smoke):
    @settings(suppress_health_check=[HealthCheck.too_slow])
    @given(broken_search_files(smoke))
    def check(raw):
        _outcome(lambda: parse_search_config(raw))

    check()


def test_valid_search_files_parse_as_written(smoke):
    @given(valid_search_files(smoke))
    def check(raw):
        spec = parse_search_config(raw)
        assert spec.search.num_samples == raw["search"]["num_samples"]
        assert spec.max_t == raw["asha"]["max_t"]

    check()


# --- function expressions ---------------------------------------------------------------------

LEAVES = st.one_of(
    st.sampled_from(["x0", "x1", "pi"]),
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=False).map(repr),
    st.sampled_from(["os", "__import__", "y", "x2", "e", "True", "None", "''", "[]", "{}", "...", "1e400", "9**9**9"]),
)


def _extend(inner):
    ops = st.sampled_from(["+", "-", "*", "/", "**", "%", "//", "@", "and", "<", "=="])
    calls = st.sampled_from(["sin", "cos", "exp", "log", "sqrt", "tan", "abs", "eval", "open", "getattr", "sin(x0,"])
    return st.one_of(
        st.tuples(inner, ops, inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda a: f"-{a}"),
        st.tuples(calls, inner).map(lambda t: f"{t[0]}({t[1]})"),
        inner.map(lambda a: f"({a}).real"),
        inner.map(lambda a: f"{a}[0]"),
        inner.map(lambda a: f"lambda: {a}"),
    )


EXPRESSIONS = st.one_of(
    st.recursive(LEAVES, _extend, max_leaves=20),
    st.integers(1, 400).map(lambda n: "(" * n + "x0" + ")" * n),
    st.integers(1, 400).map(lambda n: "-" * n + "x1"),
    st.integers(1, 60).map(lambda n: "cos(" * n + "x0" + ")" * n),
    st.text(max_size=30),
)
LINES = torch.stack([torch.linspace(0.9, 0.2, 50), torch.linspace(0.1, 0.8, 50)], dim=-1).unsqueeze(0)


@given(EXPRESSIONS, EXPRESSIONS)
def test_function_expressions_parse_and_evaluate_or_end_in_one_user_error(first, second):
    def parse_and_evaluate():
        Config(functions=(first, second))
        return FunctionPair((first, second))(LINES)

    y, error = _outcome(parse_and_evaluate)
    assert error is not None or y.shape == LINES.shape


@given(
    st.integers(-60, 60),
    st.integers(-60, 60),
    st.sampled_from([-3, -1, 2, 0.5]),
    st.sampled_from(["sin", "cos"]),
)
def test_a_pair_whose_solutions_are_a_continuum_is_refused(a, b, k, kind):
    assume(a or b)
    with pytest.raises(UserError, match="continuum"):
        Config(functions=(f"cos({a}*x0 + {b}*x1)", f"{kind}({a * k}*x0 + {b * k}*x1 + 1)"))


# --- .pt files --------------------------------------------------------------------------------

DTYPES = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64, torch.uint8, torch.bool])


@st.composite
def tensors(draw):
    shape = draw(st.lists(st.integers(0, 4), max_size=5))
    if draw(st.booleans()):
        shape = [draw(st.integers(0, 3)), 1, draw(st.sampled_from([1, 2, 50])), 2]
    t = torch.randn(tuple(shape)) * draw(st.sampled_from([1.0, 1e30]))
    if t.numel() and draw(st.booleans()):
        t.view(-1)[0] = draw(st.sampled_from([float("nan"), float("inf"), -float("inf")]))
    return t.to(draw(DTYPES))


def _dataset(*tensors) -> TensorDataset:
    """A TensorDataset of any tensors, of unequal lengths too (as a file may hold one)."""
    dataset = TensorDataset.__new__(TensorDataset)
    dataset.tensors = tensors
    return dataset


@st.composite
def torch_files(draw):
    kind = draw(st.sampled_from(["bytes", "dataset", "dataset1", "dict", "pairs", "tensor", "other", "truncated"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    obj = {
        "dataset": lambda: _dataset(draw(tensors()), draw(tensors())),
        "dataset1": lambda: _dataset(draw(tensors())),
        "dict": lambda: {"x": draw(tensors()), "y": draw(tensors())} if draw(st.booleans()) else {"x": 1},
        "pairs": lambda: [(draw(tensors()), draw(tensors())) for _ in range(draw(st.integers(0, 3)))],
        "tensor": lambda: draw(tensors()),
        "other": lambda: draw(st.sampled_from([1, "text", None, [1, 2], {"y": 2}])),
        "truncated": lambda: TensorDataset(torch.rand(3, 1, 50, 2), torch.rand(3, 1, 50, 2)),
    }[kind]()
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    return data[: draw(st.integers(0, len(data) - 1))] if kind == "truncated" else data


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(torch_files())
def test_torch_files_load_as_lines_or_end_in_one_user_error(tmp_path, data):
    path = tmp_path / "file.pt"
    path.write_bytes(data)
    loaded, error = _outcome(lambda: load_challenge(path))
    if error is not None:
        return
    x, y = loaded
    assert x.shape == y.shape
    assert x.dim() == 3
    assert x.shape[-1] == 2
    assert torch.isfinite(x).all()
    assert torch.isfinite(y).all()


def test_found_by_fuzzing_a_home_folder_of_no_such_user_is_one_line(smoke):
    raw = copy.deepcopy(smoke)
    raw["data"]["train_file"] = "~0"  # pathlib raised RuntimeError('Could not determine home directory')
    _, error = _outcome(lambda: parse_search_config(raw))
    assert "no home folder for '~0'" in str(error)
    raw = copy.deepcopy(smoke)
    raw["data"]["\n"] = None  # a key with a newline broke the one line
    _, error = _outcome(lambda: parse_search_config(raw))
    assert "unknown key" in str(error)
