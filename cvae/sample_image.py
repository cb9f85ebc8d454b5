"""plot_samples' picture as an image array, cheap enough for a trial to draw at every rung of a search.

A trial draws its sample picture (TensorBoard's `samples`) several times, and with actor reuse a worker draws it
for trial after trial, always against the same validation conditions. Matplotlib spends most of a picture on
what does not change (axes, ticks, titles, legends, the given conditions) and on anti-aliased, alpha-blended
sample lines. Here `plot_samples` builds the picture once per set of conditions; its fixed parts are kept as two
image layers (what lies under the sample lines, and what lies over them: the given y, the true x, the legends,
the frames), and each picture only draws the samples' lines into the image (Pillow, 1-pixel lines at an alpha
that puts the same ink per length as matplotlib's wider anti-aliased ones) and the title (matplotlib, alone).
Layout, colours and content are plot_samples'; only the thin sample lines are drawn differently.
"""

from __future__ import annotations

import hashlib
import io

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image, ImageDraw

from .functions import FunctionPair
from .plots import PLOT_CONDITIONS, plot_samples

_COLOURS = ((31, 119, 180), (255, 127, 14))  # matplotlib's tab:blue and tab:orange, as plot_samples draws
_ALPHAS = (0.25, 0.2)  # plot_samples' alpha for the x lines (top row) and the y lines (bottom row)
_INK = 1.39  # plot_samples' lines are 1 pt = 1.39 px wide at 100 dpi; these are 1 px
_KEPT = 2  # sets of conditions kept (a trial draws one; a worker's trials share it)


class _Picture:
    """The fixed layers of plot_samples' picture for one set of conditions, and where its panels are."""

    def __init__(self, x, y, functions, x_true, conditions: int, titled: bool):
        fig = plot_samples(x, y, functions, x_true=x_true, conditions=conditions, title="title" if titled else "")
        plt.close(fig)  # out of pyplot's list of open figures ...
        FigureCanvasAgg(fig)  # ... on a canvas of its own
        self.fig, self.title = fig, fig._suptitle if titled else None
        axes = np.array(fig.axes).reshape(2, -1)
        samples = [c for ax in fig.axes for c in ax.collections]
        over = [a for ax in fig.axes for a in (*ax.lines, *ax.spines.values(), ax.get_legend()) if a is not None]
        self.under = np.ascontiguousarray(self._layer(samples + over + ([self.title] if titled else []), True)[..., :3])
        self.over = Image.fromarray(self._layer(over, hide=False))
        self.height = self.under.shape[0]
        self.panels = [[self._panel(ax) for ax in row] for row in axes]
        for artist in fig.get_children():  # from now on the figure draws its title only (draw_artist)
            artist.set_visible(False)
        fig.canvas.draw()
        self.blank = fig.canvas.copy_from_bbox(fig.bbox)
        if titled:
            self.title.set_visible(True)

    def _layer(self, artists, hide: bool) -> np.ndarray:
        """The figure drawn without `artists` (hide) or with only them on a transparent ground (RGBA)."""
        fig = self.fig
        if hide:
            for artist in artists:
                artist.set_visible(False)
        else:
            fig.patch.set_alpha(0)
            for ax in fig.axes:
                ax.patch.set_alpha(0)
                for part in (ax.xaxis, ax.yaxis, ax.title, *ax.texts):
                    part.set_visible(False)
            for artist in artists:
                artist.set_visible(True)
            if self.title is not None:
                self.title.set_visible(False)
        fig.canvas.draw()
        return np.asarray(fig.canvas.buffer_rgba()).copy()

    def _panel(self, ax):
        """(box in image pixels, scale and offset from (point, value) to pixels inside the box)."""
        x0, y0, x1, y1 = ax.bbox.extents
        box = (int(x0), int(self.height - y1), int(np.ceil(x1)), int(np.ceil(self.height - y0)))
        (ax_, ay_), (bx_, by_) = ax.transData.transform([[0.0, 0.0], [1.0, 1.0]])
        return box, (bx_ - ax_, ax_ - box[0]), (-(by_ - ay_), self.height - ay_ - box[1])

    def image(self, x: np.ndarray, y_hat: np.ndarray, title: str) -> np.ndarray:
        picture = Image.fromarray(self.under)
        for row, values in ((0, x), (1, y_hat)):
            for i, (box, (sx, ox), (sy, oy)) in enumerate(self.panels[row]):
                panel = picture.crop(box)
                draw = ImageDraw.Draw(panel, "RGBA")
                t = np.arange(values.shape[2]) * sx + ox
                alpha = round(255 * min(1.0, _ALPHAS[row] * _INK))
                for k, colour in enumerate(_COLOURS):
                    lines = np.stack(np.broadcast_arrays(t, values[i, ..., k] * sy + oy), axis=-1)
                    for line in lines.reshape(lines.shape[0], -1).tolist():
                        draw.line(line, fill=(*colour, alpha), width=1)
                picture.paste(panel, box[:2])
        picture.paste(self.over.convert("RGB"), (0, 0), self.over)
        if self.title is not None:
            self._draw_title(picture, title)
        return np.asarray(picture).copy()

    def _draw_title(self, picture: Image.Image, title: str) -> None:
        canvas = self.fig.canvas
        self.title.set_text(title)
        canvas.restore_region(self.blank)
        self.fig.draw_artist(self.title)
        x0, y0, x1, y1 = self.title.get_window_extent().extents
        box = (max(0, int(x0) - 2), max(0, int(self.height - y1) - 2), int(x1) + 3, int(self.height - y0) + 3)
        text = Image.fromarray(np.asarray(canvas.buffer_rgba())).crop(box)
        picture.paste(text.convert("RGB"), box[:2], text)


_pictures: dict = {}


def _key(*tensors, conditions: int, titled: bool) -> tuple:
    digest = hashlib.sha1()
    for t in tensors:
        digest.update(b"-" if t is None else t.numpy().tobytes() + str(tuple(t.shape)).encode())
    return digest.hexdigest(), conditions, titled


def sample_image(x, y, functions: FunctionPair, x_true=None, conditions: int = PLOT_CONDITIONS, title: str = ""):
    """(H, W, 3) uint8: plot_samples(x, y, functions, x_true, conditions, title) as an image, drawn fast.

    x (N, S, P, 2) samples, y (N, P, 2) conditions, x_true (N, P, 2) or None. The first picture of a set of
    conditions costs what plot_samples does; the next ones only their lines and title.
    """
    x = torch.as_tensor(x).detach().float().cpu()
    y = torch.as_tensor(y).detach().float().cpu()
    n = min(conditions, x.shape[0])
    x_true = None if x_true is None else torch.as_tensor(x_true).detach().float().cpu()[:n]
    key = _key(y[:n], x_true, conditions=n, titled=bool(title))
    if key not in _pictures:
        while len(_pictures) >= _KEPT:
            _pictures.pop(next(iter(_pictures)))
        _pictures[key] = _Picture(x[:n], y[:n], functions, x_true, n, bool(title))
    y_hat = functions(x[:n].double()).float()
    return _pictures[key].image(x[:n].numpy(), y_hat.numpy(), title)


def png_bytes(image: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 image as PNG at zlib's fastest level: half the time of the default level for these
    pictures (lines on white), at about the same size."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
