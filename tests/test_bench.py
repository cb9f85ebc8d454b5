"""The benchmarks in bench/ keep working: each runs in --quick mode and prints its table and RESULT line.

Never asserts a timing (machines here are noisy); results live in docs/benchmarks.md.
All of them share one local Ray (the `ray_local` fixture) so Ray starts once.
"""

import importlib
import re

import pytest

RESULT = re.compile(r"^RESULT (\w+) (\S+) goal (\S+) (met|missed)$")


pytestmark = pytest.mark.usefixtures("bench_on_path")  # tests/conftest.py


def run_quick(name, capsys, *extra):
    """bench/<name>.py --quick through its main(argv); bench/ is on sys.path (the `bench` fixture)."""
    module = importlib.import_module(name)
    module.main(["--quick", *extra])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert RESULT.match(lines[-1]), lines[-1]  # the script ends with its RESULT line
    table = [line for line in lines if line.startswith("|")]
    assert len(table) >= 3, out
    assert set(table[1]) <= set("|-"), out  # a markdown table: header, rule, rows
    return out, RESULT.match(lines[-1])


def test_train_throughput(capsys):
    out, result = run_quick("train_throughput", capsys)
    assert result.group(1) == "train_throughput_ratio"
    assert "| cvae.Trainer |" in out


def test_gpu_scaling_skips_without_cuda(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the real benchmark runs by hand (see docs/benchmarks.md)")
    out, result = run_quick("gpu_scaling", capsys)
    assert "skipped: no GPU" in out
    assert result.group(2) == "skipped"


def test_trial_overhead(ray_local, capsys):
    out, result = run_quick("trial_overhead", capsys)
    assert result.group(1) == "trial_overhead_ratio"
    assert "| plain process" in out
    assert "| Tune trial" in out


@pytest.mark.slow
def test_parallel_scaling(ray_local, capsys):
    out, result = run_quick("parallel_scaling", capsys)
    assert result.group(1) == "parallel_scaling_2v1"
    assert "| 2 concurrent" in out


@pytest.mark.slow
def test_data_sharing(ray_local, capsys):
    out, _result = run_quick("data_sharing", capsys)
    sources = ("object store, tensors", "object store, numpy (project)", "generate", "load .pt file")
    assert all(f"| {source} |" in out for source in sources)


@pytest.mark.slow
def test_search_efficiency(ray_local, capsys):
    out, _result = run_quick("search_efficiency", capsys)
    assert "| TPE + ASHA (project) |" in out
    assert "| random + FIFO |" in out


@pytest.mark.slow
def test_original_workflow(ray_local, capsys):
    out, _result = run_quick("original_workflow", capsys)
    assert "(a) sequential Optuna" in out
    assert "(b) this project" in out


@pytest.mark.slow
def test_many_trials(ray_local, capsys):
    out, _result = run_quick("many_trials", capsys)
    names = [line.split()[1] for line in out.splitlines() if line.startswith("RESULT ")]
    # the laptop space draws sample images (at each trial's last epoch at least): their cost is a RESULT too
    assert names == [
        "many_trials_overhead_s",
        "many_trials_searcher_ms_at_100",
        "many_trials_image_ms",
        "many_trials_efficiency",
    ]
    for row in ("| TPE (project) | wall / ideal (s) |", "| random sampler | driver: experiment-state saves |"):
        assert row in out
    assert "| TPE (project) | 100 |" in out  # the searcher's cost at 100 finished trials


@pytest.mark.slow
def test_driver_scaling(capsys):
    out, result = run_quick("driver_scaling", capsys)
    assert result.group(1) == "driver_results_fraction_at_8"
    assert "| 8 |" in out


@pytest.mark.slow
def test_robust_choice(ray_local, capsys):
    out, result = run_quick("robust_choice", capsys)
    assert result.group(1) == "pruning_failed_compute_saving"
    for name in ("best_of_n_optimism", "lcb_beats_best", "lcb_final_minus_best", "pruning_best_minus_plain"):
        assert f"RESULT {name} " in out, name
    assert "| search seed | trials | best: search score | its re-run mean | optimism |" in out
    assert "| search seed | pruning | trials | failed trials | failed trials' s |" in out
    assert "| trial | latent | epochs | best val_score | min components |" in out


def test_rung_alignment_ranks_each_epoch_against_the_last(tmp_path, capsys):
    """Three trials that ran to the end, ordered one way at epoch 1 and the other way from epoch 2 on, and one
    that ASHA stopped (left out: its end is unknown)."""
    import pandas as pd

    rows = []
    for i, curve in enumerate(([0.3, 0.1, 0.1], [0.2, 0.2, 0.2], [0.1, 0.3, 0.3], [0.9])):
        (tmp_path / f"t{i}").mkdir()
        progress = pd.DataFrame({"epoch": range(1, len(curve) + 1), "val_score": curve})
        progress.to_csv(tmp_path / f"t{i}" / "progress.csv", index=False)
        rows.append({"run": f"t{i}", "metric": "val_score", "config/wy_delay": 10 * (i % 2)})
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    importlib.import_module("rung_alignment").main([str(tmp_path), "--rung", "1", "2", "--by", "wy_delay"])
    out = capsys.readouterr().out
    assert "3 trials that ran to the end" in out
    assert "| 1 | 3 | -1.000 |" in out
    assert "| 2 | 3 | 1.000 |" in out
    assert "| 10 | 1 | 0.2000 | 0.2000 | 0.2000 |" in out  # the wy_delay 10 trial: t1
    assert out.strip().splitlines()[-2:] == [
        "RESULT rung_spearman_at_1 -1.000 goal >= 0.7 missed",
        "RESULT rung_spearman_at_2 1.000 goal >= 0.7 met",
    ]


def test_rung_alignment_names_a_folder_without_results(tmp_path):
    with pytest.raises(SystemExit, match=r"no results\.csv; pass a finished search's folder"):
        importlib.import_module("rung_alignment").main([str(tmp_path)])
