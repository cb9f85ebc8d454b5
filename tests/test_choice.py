"""A choice you can trust: finalize's re-runs of the search's top configurations (search/finalize/choice.py),
their intervals and pick rules, on a recorded experiment (make_experiment), through `twobirds-finalize`."""

import json
import math

import pytest

from search.finalize import load_experiment
from search.finalize.choice import candidates, interval, pick
from search.trials import ranked_trials, read_results


def test_the_interval_is_students_t_on_the_mean_and_for_one_new_run():
    stats = interval([1.0, 2.0, 3.0])
    t_95_2 = 2.919985580  # Student-t, 2 degrees of freedom, 95th percentile: a two-sided 90% interval
    assert stats["mean"] == pytest.approx(2.0)
    assert stats["std"] == pytest.approx(1.0)
    assert stats["ci"] == pytest.approx([2 - t_95_2 / math.sqrt(3), 2 + t_95_2 / math.sqrt(3)])
    assert stats["prediction"] == pytest.approx([2 - t_95_2 * math.sqrt(4 / 3), 2 + t_95_2 * math.sqrt(4 / 3)])
    assert interval([1.0, 1.0])["ci"] == [1.0, 1.0]  # no spread, no width
    for scores in ([0.5], [0.5, float("inf")]):  # one run, or a diverged one: no interval to bound a mean with
        assert all(math.isnan(v) for v in interval(scores)["ci"]), scores


def test_the_pick_rules_mean_lcb_and_best():
    steady = {"mean": 0.50, "ci": [0.45, 0.55]}  # a lower mean, but sure of it
    lucky = {"mean": 0.60, "ci": [0.20, 1.00]}  # a higher mean, by chance as much as not
    diverged = {"mean": math.nan, "ci": [math.nan, math.nan]}
    stats = [lucky, steady, diverged]  # in the search's order: the first is its best trial
    assert pick(stats, "best", "max") == 0
    assert pick(stats, "mean", "max") == 0
    assert pick(stats, "lcb", "max") == 1
    # a minimised objective (train_loss): the pessimistic end is the upper bound, the lowest wins
    low_mean_wide = {"mean": 0.40, "ci": [0.10, 0.70]}
    high_mean_tight = {"mean": 0.45, "ci": [0.42, 0.48]}
    assert pick([low_mean_wide, high_mean_tight], "mean", "min") == 0
    assert pick([low_mean_wide, high_mean_tight], "lcb", "min") == 1
    assert pick([steady, dict(steady)], "lcb", "max") == 0  # a tie goes to the search's order


def test_the_candidates_are_the_searchs_ranking_with_their_trials_configurations(tmp_path, make_experiment):
    experiment = load_experiment(make_experiment(tmp_path / "exp", trials=6))
    results = read_results(tmp_path / "exp" / "results.csv")
    ranked = ranked_trials(results, "max")
    assert ranked.iloc[0]["trial_id"] == experiment.best_trial["trial_id"]
    # full-length trials first, then the ASHA-stopped ones; the diverged one is no candidate
    assert list(ranked["stop_reason"]) == ["finished"] * 3 + ["asha"] * 2
    top = candidates(experiment, 4)
    assert [c.trial_id for c in top] == list(ranked["trial_id"][:4])
    for c, (_, row) in zip(top, ranked.iterrows()):
        assert c.config.lr == pytest.approx(row["config/lr"])
        assert c.config.head == row["config/head"]
        assert c.config.epochs == 2  # the search's max_t: its fidelity
        assert c.config.functions == experiment.config.functions


def test_finalize_top_k_reports_how_sure_the_choice_is(tmp_path, make_experiment, run_main):
    folder = make_experiment(tmp_path / "exp", trials=6)
    out = tmp_path / "final"
    ran = run_main("finalize", "--experiment", folder, "--top-k", 2, "--seeds", 2, "--quiet", "--out", out)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "re-run 4/4: trial " in ran.stdout
    report = json.loads((out / "report.json").read_text())
    choice = report["choice"]
    assert choice["rule"] == "lcb"  # the default with K > 1
    assert choice["seeds"] == [1, 2]  # the trials trained with seed 0: the re-runs use others
    assert [c["rank"] for c in choice["candidates"]] == [1, 2]
    assert all(len(c["scores"]) == 2 for c in choice["candidates"])
    picked = [c for c in choice["candidates"] if c["picked"]]
    assert len(picked) == 1
    assert picked[0]["trial_id"] == choice["picked"]
    lcbs = [c["ci"][0] for c in choice["candidates"]]
    assert picked[0]["ci"][0] == max(lcbs)
    best = choice["candidates"][0]
    assert choice["optimism"] == pytest.approx(best["search_score"] - best["mean"])
    assert choice["fidelity"]["epochs"] == 2
    assert choice["fidelity"]["train_rows"] == 256
    final = choice["final"]
    assert final["score"] == report["training"]["final"]["val_score"]
    low, high = picked[0]["prediction"]
    assert final["where"] == (
        "inside" if low <= final["score"] <= high else "above" if final["score"] > high else "below"
    )
    assert final["differs"] == []  # retrained at the search's fidelity: the same data, max_t epochs
    assert report["config"]["lr"] == pytest.approx(picked[0]["params"]["lr"])
    markdown = (out / "report.md").read_text()
    assert "## How sure is the choice" in markdown
    assert "optimism of best-of-N" in markdown
    assert ("lies inside the interval" in markdown) == (final["where"] == "inside")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pick", "lcb"], "--pick lcb needs --top-k K"),
        (["--seeds", "3"], "--seeds 3 needs --top-k K"),
        (["--top-k", "2", "--seeds", "1"], "--seeds must be >= 2"),
        (["--top-k", "0"], "--top-k must be >= 1"),
    ],
)
def test_bad_choice_flags_end_in_one_line(tmp_path, make_experiment, one_line_error, args, message):
    folder = make_experiment(tmp_path / "exp")
    one_line_error("finalize", "--experiment", folder, *args, message=message)


def test_top_k_needs_an_experiment(tmp_path, one_line_error, tiny_config):
    import yaml

    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    one_line_error("finalize", "--config", path, "--top-k", "2", message="pass --experiment")


def test_a_diverged_rerun_leaves_no_interval_and_the_report_stays_valid_json():
    from search.finalize.choice import choice_markdown, landed

    stats = interval([0.4, float("nan")])
    row = {"trial_id": "t1", "rank": 1, "search_score": 0.5, "search_epochs": 2, "stop_reason": "finished",
           "params": {}, "scores": [0.4, -1.0], **stats, "picked": True}  # fmt: skip
    fidelity = {"train_rows": 256, "lines": "official", "x_targets": "given", "epochs": 2, "val": "6", "val_samples": 4}
    choice = {"rule": "best", "rule_words": "", "interval": "", "prediction": "", "metric": "val_score", "mode": "max",
              "seeds": [1, 2], "fidelity": fidelity, "search_best": {"trial_id": "t1", "score": 0.5},
              "optimism": 0.5 - stats["mean"], "candidates": [row], "picked": "t1", "seconds": 1.0}  # fmt: skip
    report = {"training": {"final": {"val_score": 0.3}, "epochs": 2}, "config": {"val_samples": 4},
              "data": {"train_rows": 256, "train_file": None, "lines": "official", "x_targets": "given",
                       "val_file": None, "val_conditions": 6}}  # fmt: skip
    section = landed(choice, report)
    json.dumps(section, allow_nan=False)  # report.json is written without NaN
    assert section["candidates"][0]["ci"] == [None, None]
    assert section["final"]["where"] == "unknown"
    markdown = "\n".join(choice_markdown(section))
    assert "cannot be checked against the re-runs" in markdown
    assert "| n/a | n/a |" in markdown
