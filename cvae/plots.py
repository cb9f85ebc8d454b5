"""Pictures people read instead of numbers: generated lines against their condition."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # headless: trials and CI have no display
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.collections import LineCollection

from .functions import FunctionPair
from .metrics import VALID_RMSE

PLOT_CONDITIONS = 3  # validation conditions a sample or coverage picture shows


def plot_samples(x, y, functions: FunctionPair, x_true=None, conditions: int = PLOT_CONDITIONS, title: str = ""):
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
        # One LineCollection per colour and panel: a trial draws these often, 4x faster than plot().
        for ax, values, alpha, names in (
            (top, x[i], 0.25, ("generated x0", "generated x1")),
            (bottom, y_hat[i], 0.2, ("y1 from generated x", "y2 from generated x")),
        ):
            for k, (colour, name) in enumerate(zip(("tab:blue", "tab:orange"), names)):
                segments = np.stack([np.broadcast_to(t, values.shape[:2]), values[..., k].numpy()], axis=-1)
                ax.add_collection(LineCollection(segments, colors=colour, alpha=alpha, lw=1, label=name))
        top.set_xlim(t[0], t[-1])
        if x_true is not None:
            xt = torch.as_tensor(x_true)[i].float().cpu()
            top.plot(t, xt[:, 0], "k--", lw=1.5, label="a true solution (x0, x1)")
            top.plot(t, xt[:, 1], "k--", lw=1.5)
        bottom.plot(t, y[i, :, 0], "k-", lw=2, label="given y1")
        bottom.plot(t, y[i, :, 1], "k:", lw=2, label="given y2")
        top.set_title(f"condition {i}: x0 (blue, descending), x1 (orange, ascending)", fontsize=9)
        top.set_ylim(-0.05, 1.05)
        bottom.set_ylim(-1.2, 1.2)
        bottom.set_xlabel("point")
        bottom.set_title("y from the samples (colour) vs given y (black)", fontsize=9)
    axes[0, 0].set_ylabel("x")
    axes[1, 0].set_ylabel("y")
    for ax in (axes[0, 0], axes[1, 0]):
        legend = ax.legend(loc="lower left", fontsize=7, framealpha=0.9)
        for line in legend.get_lines():
            line.set_alpha(1)
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.09, top=0.88 if title else 0.93, hspace=0.25, wspace=0.2)
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


# --- finalize's pictures: training curves, solution coverage, the search's trials ---

_LOSS_LABELS = {
    "loss": "total loss",
    "kld": "KL divergence (unweighted)",
    "x_loss": "x reconstruction (unweighted)",
    "y_loss": "y error: f(x_hat) vs y (unweighted)",
}
_VAL_LABELS = {
    "val_score": "search score",
    "val_valid_frac": "valid samples (fraction)",
    "val_coverage_norm": "coverage of reachable branches",
    "val_coverage": "coverage of all branches",
}


_REFINED_LABELS = {
    "val_refined_score": "refined_score (network + refinement)",
    "val_refined_valid_frac": "valid samples after refinement",
    "val_refined_coverage_norm": "coverage after refinement",
}


def plot_training_curves(history: list[dict], title: str = "", objective: str = "val_score"):
    """Figure: training losses per epoch (log scale), the searched objective and its parts, and the RMSE gate.

    history: the rows of Trainer.fit (keys loss, kld, x_loss, y_loss, val_*, val_refined_*).
    objective: the searched metric; for val_refined_score the refined metrics are drawn solid and
    the network-only ones dashed beside them.
    """
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 4.5))
    marker = "o" if len(epochs) <= 30 else None

    def series(key):
        return np.array([row.get(key, np.nan) for row in history], dtype=float)

    _draw_losses(left, epochs, series, marker)
    drawn = _draw_validation(middle, epochs, series, marker, objective)
    rmse_drawn = _draw_rmse(right, epochs, series, marker, objective == "val_refined_score")
    for ax in (left, middle, right):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, which="both", alpha=0.3)
    for ax, ok in ((middle, drawn), (right, rmse_drawn)):
        if not ok:
            ax.text(0.5, 0.5, "no validation metrics recorded", ha="center", va="center", transform=ax.transAxes)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _draw_losses(ax, epochs, series, marker) -> None:
    for key, label in _LOSS_LABELS.items():
        values = series(key)
        values = np.where(np.isfinite(values) & (values > 0), values, np.nan)
        if np.isfinite(values).any():
            ax.plot(epochs, values, marker=marker, ms=3, label=label, lw=2 if key == "loss" else 1.2)
    ax.set_yscale("log")
    ax.set_ylabel("training loss (log scale, lower is better)")
    ax.set_title("Training losses (mean per epoch)", fontsize=10)
    ax.legend(fontsize=8)


def _draw_validation(ax, epochs, series, marker, objective: str) -> bool:
    """The objective and its parts per epoch; False when no validation metric was recorded."""
    drawn = False
    refined = objective == "val_refined_score"
    shown = list(_REFINED_LABELS.items()) if refined else []
    shown += [(k, f"{v} (network only)" if refined else v) for k, v in _VAL_LABELS.items()]
    for key, label in shown:
        values = series(key)
        if np.isfinite(values).any():
            dashed = refined and not key.startswith("val_refined_")
            width = 2.2 if key == objective else 1.2
            label = f"{label}: the objective" if key == objective else label
            ax.plot(epochs, values, marker=marker, ms=3, label=label, ls="--" if dashed else "-", lw=width)
            drawn = True
    ax.set_ylabel("share / score (higher is better)")
    ax.set_title(f"Validation after each epoch; searched objective: {objective}", fontsize=10)
    if drawn:
        ax.legend(fontsize=8)
    return drawn


def _draw_rmse(ax, epochs, series, marker, refined: bool) -> bool:
    """The validation RMSE against the challenge gate; False when none was recorded."""
    rmse = series("val_overall_rmse")
    refined_rmse = series("val_refined_overall_rmse")
    if refined and np.isfinite(refined_rmse).any():
        ax.plot(epochs, refined_rmse, color="tab:green", marker=marker, ms=3, label="overall RMSE after refinement")
    if np.isfinite(rmse).any():
        label = "overall RMSE of f(generated x) vs y" + (" (network only)" if refined else "")
        ax.plot(epochs, rmse, color="black", marker=marker, ms=3, label=label)
        ax.axhline(VALID_RMSE, color="red", lw=1.2, ls="--", label=f"challenge gate: RMSE < {VALID_RMSE} passes")
        ax.set_ylim(bottom=0, top=max(0.12, float(np.nanmax(rmse)) * 1.1))
        ax.legend(fontsize=8)
    ax.set_ylabel("RMSE (lower is better)")
    ax.set_title("Validation RMSE against the challenge gate", fontsize=10)
    return bool(np.isfinite(rmse).any())


def plot_coverage(x, y, functions: FunctionPair, x_true=None, conditions: int = PLOT_CONDITIONS, title: str = ""):
    """Figure: per condition (column), every exact solution branch as a point in line-endpoint space.

    Top row: each branch's x0 line as (start, end); bottom row: its x1 line. Branches that
    some valid sample reached are filled green, missed ones hollow red; the samples' own
    fitted endpoints are small dots (blue valid, grey invalid). Outside the sin/cos family
    there are no branches to draw and the figure says so.
    """
    from .lines import endpoints_from_lines
    from .metrics import COVERAGE_TOL, coverage, validity

    x = torch.as_tensor(x).detach().float().cpu()
    y = torch.as_tensor(y).detach().float().cpu()
    n = min(conditions, x.shape[0])
    if functions.trig is None:
        return _no_branches_figure(functions)
    x_true_n = None if x_true is None else torch.as_tensor(x_true)[:n].float().cpu()
    cover = coverage(x[:n], y[:n], functions, x_true=x_true_n)
    valid = validity(x[:n], y[:n], functions)["valid"]
    ends = endpoints_from_lines(x[:n].double()).numpy()
    fig, axes = plt.subplots(2, n, figsize=(4.3 * n, 9.6), squeeze=False, layout="constrained")
    for i in range(n):
        branch = cover["branches"][i].cpu().numpy()
        hit = cover["hit"][i].cpu().numpy().astype(bool)
        ok = valid[i].numpy().astype(bool)
        for row, plane in enumerate(_ENDPOINT_PLANES):
            head = (
                f"condition {i}: {int(hit.sum())} of {len(branch)} exact solutions hit\n"
                f"{int(ok.sum())} of {ok.size} samples valid\n"
                if row == 0
                else ""
            )
            _draw_endpoint_plane(axes[row, i], plane, ends[i], ok, branch, hit, head)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=9, frameon=False, markerscale=1.2)
    fig.suptitle(
        title
        or "Solution coverage: every exact solution (branch) of a condition is one point in each row;\n"
        f"it is hit when a valid sample's endpoints lie within {COVERAGE_TOL} of it",
        fontsize=11,
    )
    return fig


_ENDPOINT_PLANES = (
    ("x0", 0, 1, "x0 line (descending: end < start)"),
    ("x1", 2, 3, "x1 line (ascending: end > start)"),
)


def _no_branches_figure(functions: FunctionPair):
    fig, ax = plt.subplots(figsize=(8, 2.5))
    ax.axis("off")
    ax.text(
        0.5,
        0.5,
        f"No coverage picture: {functions.texts} are not both sin/cos(a*x0 + b*x1 + c),\n"
        "so the exact solution branches cannot be enumerated.",
        ha="center",
        va="center",
    )
    return fig


def _draw_endpoint_plane(ax, plane, ends, ok, branch, hit, head: str) -> None:
    """One condition's samples and exact solutions in one line's (start, end) plane."""
    name, a, b, what = plane
    ax.plot([0, 1], [0, 1], color="0.75", lw=1, zorder=0, label="start = end (constant line)")
    ax.scatter(ends[~ok, a], ends[~ok, b], s=14, color="0.55", alpha=0.6, label="generated sample, invalid", zorder=1)
    ax.scatter(ends[ok, a], ends[ok, b], s=14, color="tab:blue", alpha=0.7, label="generated sample, valid", zorder=2)
    ax.scatter(
        branch[~hit, a],
        branch[~hit, b],
        s=70,
        facecolors="none",
        edgecolors="tab:red",
        linewidths=1.5,
        label="exact solution missed",
        zorder=3,
    )
    ax.scatter(
        branch[hit, a],
        branch[hit, b],
        s=70,
        color="tab:green",
        edgecolors="black",
        linewidths=0.8,
        label="exact solution hit",
        zorder=4,
    )
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(f"{name} at the first point (start)")
    ax.set_ylabel(f"{name} at the last point (end)")
    ax.grid(True, alpha=0.3)
    ax.set_title(f"{head}{what}", fontsize=9)
