"""cvae/sample_image.py draws plot_samples' picture (what TensorBoard shows of a trial), only faster.

Compared with plot_samples rendered by matplotlib: the same size, the same fixed parts (title, panel titles, axes,
legends, the given conditions), and sample lines where plot_samples draws them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cvae.functions import FunctionPair
from cvae.plots import figure_to_array, plot_samples
from cvae.sample_image import sample_image

FUNCTIONS = FunctionPair(["cos(49*x0 + 42*x1)", "cos(56*x0 + 63*x1)"])


def lines(seed: int, conditions: int = 3, samples: int = 16, points: int = 50) -> torch.Tensor:
    """Straight-line pairs like a model's samples: x0 descending, x1 ascending."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, points)
    a, b = torch.rand(conditions, samples, 1, generator=g), torch.rand(conditions, samples, 1, generator=g)
    return torch.stack([a * (1 - t), b + (1 - b) * t], dim=-1)


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


@pytest.mark.parametrize("title", ["epoch 4: 16 samples, network only", ""])
def test_the_picture_is_plot_samples(title):
    x_true = lines(0)[:, 0]
    y = FUNCTIONS(x_true.double()).float()
    seeds = (1, 2, 3)
    reference = {s: figure_to_array(plot_samples(lines(s), y, FUNCTIONS, x_true=x_true, title=title)) for s in seeds}
    for seed in seeds:  # the first draws the fixed layers, the next ones reuse them
        image = sample_image(lines(seed), y, FUNCTIONS, x_true=x_true, title=title)
        assert image.shape == reference[seed].shape
        assert image.dtype == np.uint8
        top = 45  # the title band, above the panels: identical but for anti-aliasing
        assert difference(image[:top], reference[seed][:top]) < 1.0
        # the lines are where plot_samples draws them: far closer than plot_samples' picture of other samples
        other = reference[seeds[seed % len(seeds)]]
        assert difference(image, reference[seed]) < 0.6 * difference(reference[seed], other)
    other_title = sample_image(lines(3), y, FUNCTIONS, x_true=x_true, title=title.replace("4", "8"))
    if title:  # only the title changed: the picture differs in the title band alone
        assert difference(other_title[:45], image[:45]) > 0
        assert difference(other_title[45:], image[45:]) == 0


def test_new_conditions_get_their_own_picture():
    x = lines(5, conditions=2, points=30)
    y = FUNCTIONS(x[:, 0].double()).float()
    image = sample_image(x, y, FUNCTIONS, title="t")
    reference = figure_to_array(plot_samples(x, y, FUNCTIONS, title="t"))
    assert image.shape == reference.shape  # two panels wide
    assert difference(image, reference) < 6


def test_the_png_holds_the_picture_pixel_for_pixel():
    import io

    from PIL import Image

    from cvae.sample_image import png_bytes

    x = lines(7)
    y = FUNCTIONS(x[:, 0].double()).float()
    image = sample_image(x, y, FUNCTIONS, title="png")
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(image))).convert("RGB"))
    assert np.array_equal(decoded, image)
