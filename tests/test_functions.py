import math

import numpy as np
import pytest
import torch

from cvae.functions import OFFICIAL_FUNCTIONS, Function, FunctionPair, FunctionSyntaxError, Trig


def test_evaluates_like_python_math_on_numpy_and_torch():
    f = Function("cos(49*x0 + 42*x1) - 2**-1 * sqrt(abs(x1)) / (1 + tanh(x0)) + exp(log(2)) * tan(0.1)")
    x0, x1 = 0.3, 0.7
    expected = math.cos(49 * x0 + 42 * x1) - 2**-1 * math.sqrt(abs(x1)) / (1 + math.tanh(x0)) + 2 * math.tan(0.1)
    assert f(np.array([x0]), np.array([x1]))[0] == pytest.approx(expected)
    assert f(torch.tensor([x0], dtype=torch.float64), torch.tensor([x1], dtype=torch.float64)).item() == (
        pytest.approx(expected)
    )


def test_precedence_and_unary_minus():
    assert Function("-2**2")(np.zeros(1), np.zeros(1))[0] == -4
    assert Function("2*3+4/2-1")(np.zeros(1), np.zeros(1))[0] == 7
    assert Function("2**3**2")(np.zeros(1), np.zeros(1))[0] == 512
    assert Function("-(x0 - x1)")(np.array([1.0]), np.array([3.0]))[0] == 2


def test_constant_function_keeps_the_input_shape():
    assert Function("3")(torch.ones(4, 2), torch.ones(4, 2)).shape == (4, 2)
    assert Function("cos(1)")(np.ones(3), np.ones(3)).shape == (3,)


def test_torch_gradient_flows_through_the_pair():
    pair = FunctionPair(OFFICIAL_FUNCTIONS)
    x = torch.rand(3, 50, 2, requires_grad=True)
    y = pair(x)
    assert y.shape == (3, 50, 2)
    y.sum().backward()
    assert x.grad.abs().sum() > 0


def test_recognises_the_trig_family():
    assert FunctionPair().trig == (Trig("cos", 49, 42, 0), Trig("cos", 56, 63, 0))
    assert Function("sin(5*x0 + 3*x1)").trig == Trig("sin", 5, 3, 0)
    assert Function("cos(2*(x0 - x1)/4 + pi)").trig == Trig("cos", 0.5, -0.5, math.pi)
    assert Function("cos(x0*x1)").trig is None
    assert Function("2*cos(x0)").trig is None
    assert Function("tanh(x0 + x1)").trig is None
    assert FunctionPair(["sin(x0)", "x0*x1"]).trig is None


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("cos(foo)", "'foo'"),
        ("__import__('os')", "'__import__'"),
        ("os.system(1)", "'os'"),
        ("x0 $ 2", "'$'"),
        ("x0 +", "end of input"),
        ("cos(x0", "end of input"),
        ("x0)", "')'"),
        ("x2 + 1", "'x2'"),
        ("", "empty"),
    ],
)
def test_rejects_bad_input_naming_the_token(text, token):
    with pytest.raises(FunctionSyntaxError, match=token.replace("(", r"\(").replace(")", r"\)").replace("$", r"\$")):
        Function(text)


def test_pair_needs_two_functions():
    with pytest.raises(FunctionSyntaxError, match="exactly two"):
        FunctionPair(["cos(x0)"])


@pytest.mark.parametrize(
    "text",
    ["x0.real", "cos(x0).imag", "lambda: 1", "x0 if x1 else 2", "cos(x0=1)", "'a'", "True*x0"],
)
def test_nothing_outside_the_grammar_is_accepted(text):
    """Python parses the text, but only numbers, x0, x1, pi, arithmetic and the listed calls survive."""
    with pytest.raises(FunctionSyntaxError, match="not allowed; allowed are numbers"):
        Function(text)


def test_signs_powers_and_newlines_parse_as_arithmetic():
    assert Function("-x0**2 + +x1")(2.0, 1.0) == pytest.approx(-3.0)
    assert Function("cos(49*x0\n + 42*x1)").trig == Trig("cos", 49, 42, 0)
