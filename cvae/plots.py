"""Pictures people read instead of numbers: generated lines against their condition."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # headless: trials and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .functions import FunctionPair  # noqa: E402


def plot_samples(x, y, functions: FunctionPair, x_true=None, conditions: int = 3, title: str = ""):
    """Figure: per condition, generated x0/x1 lines (and the true ones) above recomputed vs given y.

    x (N, S, P, 2) samples, y (N, P, 2) conditions, x_true (N, P, 2) or None.
    """
    x = torch.as_tensor(x).detach().float().cpu()
    y = torch.as_tensor(y).detach().float().cpu()
    n = min(conditions, x.shape[0])
    t = np.arange(x.shape[2])
    fig, axes = plt.subplots(2, n, figsize=(4 * n, 6), squeeze=False, sharex=True)
    y_hat = functions(x.double()).float()
    for i in range(n):
        top, bottom = axes[0, i], axes[1, i]
        for s in range(x.shape[1]):
            top.plot(t, x[i, s, :, 0], color="tab:blue", alpha=0.25, lw=1)
            top.plot(t, x[i, s, :, 1], color="tab:orange", alpha=0.25, lw=1)
            bottom.plot(t, y_hat[i, s, :, 0], color="tab:blue", alpha=0.2, lw=1)
            bottom.plot(t, y_hat[i, s, :, 1], color="tab:orange", alpha=0.2, lw=1)
        if x_true is not None:
            xt = torch.as_tensor(x_true)[i].float().cpu()
            top.plot(t, xt[:, 0], "k--", lw=1.5, label="a true solution")
            top.plot(t, xt[:, 1], "k--", lw=1.5)
        bottom.plot(t, y[i, :, 0], "k-", lw=2, label="given y1")
        bottom.plot(t, y[i, :, 1], "k:", lw=2, label="given y2")
        top.set_title(f"condition {i}: x0 (blue, descending), x1 (orange)", fontsize=9)
        top.set_ylim(-0.05, 1.05)
        bottom.set_ylim(-1.2, 1.2)
        bottom.set_xlabel("point")
        bottom.set_title("f(generated x) vs given y (black)", fontsize=9)
    axes[0, 0].set_ylabel("x")
    axes[1, 0].set_ylabel("y")
    if x_true is not None:
        axes[0, 0].legend(loc="lower left", fontsize=8)
    axes[1, 0].legend(loc="lower left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def figure_to_png(fig) -> bytes:
    """PNG bytes of a figure, which is then closed (figures leak memory otherwise)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


def figure_to_array(fig) -> np.ndarray:
    """(H, W, 3) uint8 RGB image of a figure, for TensorBoard; the figure is closed."""
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image
