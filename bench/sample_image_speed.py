"""A trial's TensorBoard sample picture, before and after issue 22: what one costs, drawn and written.

The picture of the default laptop search (3 validation conditions x 16 samples of straight-line pairs, 50 points,
a title), written to a TensorBoard event file as a trial writes it: before, `plot_samples` + `figure_to_array` +
torch's `add_image` (PNG at the default zlib level); after, `sample_image` (the fixed layers kept) + the PNG at
the fastest level, as the trial's `_Images` writes it. Each repeat draws new samples; the two ways alternate;
the first picture of each (the after one builds its layers) is reported apart. Wall and CPU seconds, 1 thread.
Both write through the same torch SummaryWriter; the event's checksum is TensorBoard's pure-Python one before,
google_crc32c's after (search/driver/compat entry 24).

    .venv/bin/python bench/sample_image_speed.py              # 20 pictures each
    .venv/bin/python bench/sample_image_speed.py --quick      # 3 each (a test)
"""

from __future__ import annotations

import argparse
import tempfile
import time

import common

GOAL_MS = 50.0


def lines(seed: int, conditions: int = 3, samples: int = 16, points: int = 50):
    import torch

    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, points)
    a, b = torch.rand(conditions, samples, 1, generator=g), torch.rand(conditions, samples, 1, generator=g)
    return torch.stack([a * (1 - t), b + (1 - b) * t + 0.02 * torch.randn(conditions, samples, points)], dim=-1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 pictures each (a test)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    import torch
    from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
    from torch.utils.tensorboard import SummaryWriter

    from cvae.functions import FunctionPair
    from cvae.plots import figure_to_array, plot_samples
    from cvae.sample_image import sample_image
    from search.driver.compat import use_fast_crc32c
    from search.driver.trainable import _Images

    pure_crc = pywrap_tensorflow.crc32c
    use_fast_crc32c()  # what a trial does before its first picture (compat entry 24)
    checksums = {"before": pure_crc, "after": pywrap_tensorflow.crc32c}

    torch.set_num_threads(1)
    functions = FunctionPair(["cos(49*x0 + 42*x1)", "cos(56*x0 + 63*x1)"])
    x_true = lines(0)[:, 0]
    y = functions(x_true.double()).float()
    writer = SummaryWriter(log_dir=tempfile.mkdtemp(prefix="bench-images-"))
    images = _Images(trainer=None, epochs=[])
    images.writer = writer

    def before(x, title, step):
        image = figure_to_array(plot_samples(x, y, functions, x_true=x_true, title=title))
        writer.add_image("before", image, global_step=step, dataformats="HWC")

    def after(x, title, step):
        images._add("after", sample_image(x, y, functions, x_true=x_true, title=title), step)

    times = {"before": [], "after": []}
    load = common.load()
    for step in range(repeats + 1):
        x, title = lines(step + 1), f"epoch {step}: 16 samples, network only"
        for name, draw in (("before", before), ("after", after)):
            pywrap_tensorflow.crc32c = checksums[name]  # before: TensorBoard's pure-Python checksum
            wall, cpu = time.perf_counter(), time.process_time()
            draw(x, title, step)
            writer.flush()  # the trial flushes before its report: the event (and its checksum) is written
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    writer.close()
    loads = f"loads {load}, {common.load()}"
    print(common.machine(f"{repeats} pictures each (+1 first), 3 conditions x 16 samples; {loads}"))
    rows = []
    for name, label in (("before", "plot_samples + add_image (before)"), ("after", "sample_image + fast PNG (after)")):
        first, rest = times[name][0], times[name][1:]
        low, median, high = common.spread(1000 * w for w, _ in rest)
        cpu = common.spread(1000 * c for _, c in rest)[1]
        rows.append([label, f"{1000 * first[0]:.0f}", f"{low:.1f}", f"{median:.1f}", f"{high:.1f}", f"{cpu:.1f}"])
    common.table(["picture", "first ms", "min ms", "median ms", "max ms", "median CPU ms"], rows)
    median = common.spread(1000 * w for w, _ in times["after"][1:])[1]
    common.result("sample_image_ms", median, f"<={GOAL_MS:.0f}", median <= GOAL_MS)
    return median


if __name__ == "__main__":
    main()
