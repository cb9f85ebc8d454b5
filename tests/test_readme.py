"""The README's library example, run as written: it trains, saves, loads, samples in two regimes and scores."""

import re


def test_the_readme_library_example_runs_as_written(repo, tmp_path, monkeypatch, capsys):
    text = (repo / "README.md").read_text()
    section = text[text.index("## The library on one page") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["1", "2", "3"]  # one line per epoch
    assert lines[3].startswith("network only: valid ")
    assert lines[4].startswith("network + refinement (K=60, 10 LM steps): valid ")
    assert (tmp_path / "model.pt").is_file()
