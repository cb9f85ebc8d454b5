"""One score, two renderings: the console text of `score` and the markdown of finalize's report.

Both show the same gates, per-sample shares, RMSE spread, coverage and search score of the dict
`cvae.submission.assess` returns, so the rows are built once here and only laid out twice.
"""

from __future__ import annotations

from .metrics import COVERAGE_TOL, STRAIGHT_R, VALID_RMSE

SCORE_FORMULA = "1[gates] + 0.4 valid + 0.4 coverage_norm + 0.2 max(0, 1 - RMSE)"


def fmt(value, digits: int = 4) -> str:
    """A number as people read it: PASS/FAIL for a gate, n/a for a missing one."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "PASS" if value else "FAIL"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def sections(r: dict) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The score as (title, [(label, value, detail), ...]) sections, in reading order."""
    s = r["samples_per_condition"]
    total = r["conditions"] * s
    per = r["per_sample"]

    def count(share: float) -> str:
        return f"{round(share * total)}/{total}"

    rmse = r["sample_rmse"]
    out = [
        (
            "Challenge gates (judged over the whole result; the score is 0 unless all pass)",
            [
                (
                    "x0 descending and x1 ascending, every sample",
                    fmt(r["gate_monotone"]),
                    f"x0 {count(per['descending'])}, x1 {count(per['ascending'])}",
                ),
                (f"straight lines (Pearson abs(r) > {STRAIGHT_R}), every sample", fmt(r["gate_straight"]), ""),
                (f"overall RMSE of f(x) vs y < {VALID_RMSE}", fmt(r["gate_rmse"]), fmt(r["overall_rmse"], 5)),
                ("all gates", fmt(r["gates_pass"]), ""),
            ],
        ),
        (
            "Per sample",
            [
                ("x0 descending", pct(per["descending"]), ""),
                ("x1 ascending", pct(per["ascending"]), ""),
                ("straight", pct(per["straight"]), count(per["straight"])),
                (f"RMSE < {VALID_RMSE}", pct(per["rmse_below_0.1"]), ""),
                ("valid (all four)", pct(per["valid"]), count(per["valid"])),
                (
                    "sample RMSE",
                    f"median {fmt(rmse['median'])}, 90th percentile {fmt(rmse['p90'])}, max {fmt(rmse['max'])}",
                    "",
                ),
            ],
        ),
    ]
    if r["coverage"] is not None:
        counts = [c["branches"] for c in r.get("per_condition", []) if "branches" in c]
        spread = f"min {min(counts)}, max {max(counts)}" if counts else ""
        out.append(
            (
                f"Coverage of the exact solution branches (hit: a valid sample's endpoints within {COVERAGE_TOL})",
                [
                    ("branches per condition", f"median {fmt(r['branches_median'])}", spread),
                    ("coverage", pct(r["coverage"]), "mean share of each condition's branches hit"),
                    ("coverage_norm", pct(r["coverage_norm"]), f"hits / min(branches, {s}): what {s} samples reach"),
                ],
            )
        )
    return out


def notes(r: dict) -> list[str]:
    """The lines under the tables: why coverage is missing, and the search's score."""
    lines = [r["coverage_note"]] if r.get("coverage_note") else []
    if r.get("score") is not None:
        lines.append(f"search score: {r['score']:.4f}  ({SCORE_FORMULA})")
    return lines


def as_text(r: dict) -> list[str]:
    """Console lines: a title per section, aligned label/value columns."""
    lines = []
    for title, rows in sections(r):
        lines.append(title)
        lines += [f"  {label:<50} {value}" + (f"  ({detail})" if detail else "") for label, value, detail in rows]
        lines.append("")
    return lines + notes(r)


def submission_text(r: dict) -> str:
    """`score`'s report of a submission file (`cvae.submission.score_submission`'s dict)."""
    header = [
        f"submission: {r['submission']} ({r['rows']} rows = {r['conditions']} conditions x "
        f"{r['samples_per_condition']} samples)",
        f"conditions: {r['scoring']}: {r['conditions_note']}",
        f"functions:  {r['functions'][0]}, {r['functions'][1]}",
        "",
    ]
    return "\n".join(header + as_text(r))


def as_markdown(r: dict) -> list[str]:
    """Markdown lines: one table per section."""
    lines = [f"{r['samples_per_condition']} samples for each of {r['conditions']} validation conditions.", ""]
    for title, rows in sections(r):
        lines += [f"| {title} | result | |", "| --- | --- | --- |"]
        lines += [f"| {label} | {value} | {detail} |" for label, value, detail in rows]
        lines.append("")
    return lines + [line + "\n" for line in notes(r)]
