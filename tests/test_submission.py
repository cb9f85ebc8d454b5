"""cvae/submission.py: judging samples, reading scoring files, grouping and scoring submissions.

The scoring script itself (a subprocess, real files) is tested in test_scripts.py.
"""

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from cvae.data import make_dataset, save_submission
from cvae.functions import FunctionPair
from cvae.metrics import branches
from cvae.submission import SubmissionError, assess, group_submission, read_conditions, score_submission

# --- assessing samples ---


def test_assess_exact_solutions_pass_every_gate_and_hit_one_branch_each():
    functions = FunctionPair()
    x, y = make_dataset(4, functions, seed=5)
    samples = x[:, None].repeat(1, 3, 1, 1)
    result = assess(samples, y, functions, x_true=x)
    assert result["gates_pass"]
    assert result["valid_frac"] == 1.0
    assert result["overall_rmse"] < 1e-4
    counts = [len(b) for b in branches(y, functions, x_true=x)]
    assert [row["branches"] for row in result["per_condition"]] == counts
    assert [row["hits"] for row in result["per_condition"]] == [1] * 4
    assert result["coverage"] == pytest.approx(float(np.mean([1 / c for c in counts])))
    # without the true x the branches come from y alone: the same numbers
    alone = assess(samples, y, functions)
    assert alone["coverage"] == pytest.approx(result["coverage"])
    assert alone["score"] == pytest.approx(result["score"])


def test_assess_outside_the_trig_family_reports_no_coverage():
    functions = FunctionPair(("x0 + x1", "x0 * x1"))
    x, _ = make_dataset(3, FunctionPair(), seed=1)
    result = assess(x[:, None], functions(x), functions)
    assert result["gates_pass"]
    assert result["coverage"] is None
    assert "not both sin/cos" in result["coverage_note"]


# --- submissions ---


def _submission(tmp_path, n=4, s=5, seed=2):
    functions = FunctionPair()
    x, y = make_dataset(n, functions, seed=seed)
    samples = x[:, None].repeat(1, s, 1, 1) + 1e-5 * torch.arange(s).view(1, s, 1, 1)
    return save_submission(tmp_path / "sub.pt", samples, y), samples, x, y


def test_group_submission_matches_rows_to_conditions_in_any_order(tmp_path):
    _, samples, _, y = _submission(tmp_path)
    rows_x = samples.reshape(-1, 50, 2)
    rows_y = y.repeat_interleave(5, dim=0)
    assert torch.equal(group_submission(rows_x, rows_y, y), samples)
    order = torch.tensor([2, 0, 3, 1])
    shuffled_x = samples[order].reshape(-1, 50, 2)
    shuffled_y = y[order].repeat_interleave(5, dim=0)
    assert torch.equal(group_submission(shuffled_x, shuffled_y, y), samples)
    with pytest.raises(SubmissionError, match="no rows for 1 of"):
        group_submission(rows_x[:15], rows_y[:15], y)
    with pytest.raises(SubmissionError, match="unequal numbers of samples"):
        group_submission(rows_x[:-1], rows_y[:-1], y)
    other = make_dataset(4, FunctionPair(), seed=9)[1]
    with pytest.raises(SubmissionError, match="not a condition of the scoring file"):
        group_submission(rows_x, rows_y, other)


def test_read_conditions_from_a_conditions_file_or_a_submission(tmp_path):
    functions = FunctionPair()
    path, _, x, y = _submission(tmp_path)
    from_submission = read_conditions(path, functions)
    assert torch.equal(from_submission.y, y)
    assert from_submission.x_true is None
    assert "runs of 5" in from_submission.note
    exact = tmp_path / "conditions.pt"
    torch.save(TensorDataset(x.unsqueeze(1), y.unsqueeze(1)), exact)
    conditions = read_conditions(exact, functions)
    assert torch.equal(conditions.x_true, x)
    assert "serve as true x" in conditions.note
    torch.save(TensorDataset(torch.zeros_like(x).unsqueeze(1), y.unsqueeze(1)), exact)
    assert read_conditions(exact, functions).x_true is None


def test_score_submission_against_itself_and_against_its_conditions(tmp_path):
    path, _, x, y = _submission(tmp_path)
    conditions = tmp_path / "conditions.pt"
    torch.save(TensorDataset(x.unsqueeze(1), y.unsqueeze(1)), conditions)
    alone = score_submission(path)
    with_truth = score_submission(path, conditions)
    for result in (alone, with_truth):
        assert result["conditions"] == 4
        assert result["samples_per_condition"] == 5
        assert result["gates_pass"]
    assert alone["coverage"] == pytest.approx(with_truth["coverage"])


@pytest.mark.parametrize("scoring", ["itself", "conditions without true x"])
def test_functions_that_cannot_have_made_the_conditions_are_refused(tmp_path, scoring):
    x, y = make_dataset(20, FunctionPair(), seed=5)
    submission = save_submission(tmp_path / "s.pt", x.unsqueeze(1).repeat(1, 3, 1, 1), y)
    other = ("sin(5*x0 + 3*x1)", "cos(4*x0 + 8*x1)")
    conditions = None
    if scoring != "itself":  # one condition per row, placeholder x: nothing to check the functions against but y
        conditions = save_submission(tmp_path / "c.pt", torch.full_like(x, 0.5).unsqueeze(1), y)
    with pytest.raises(SubmissionError, match=r"conditions have no exact solution under the functions .*--functions"):
        score_submission(submission, conditions, other)
    assert score_submission(submission, conditions)["gates_pass"]  # the functions they were made with
