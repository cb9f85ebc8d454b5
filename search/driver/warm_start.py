"""A new search that already knows the finished trials of earlier ones (`twobirds-tune --warm-start runs/A ...`).

Each earlier experiment's Optuna journal is read (opened read-only; never Tune's pickles), each of its trials is
fitted to the new search file's space, and those that fit are added to the new study before its first suggestion,
so TPE models them from the start. The rules, trial by trial:

- only COMPLETE and PRUNED trials are taken; failed and unfinished ones are skipped;
- a source whose objective (its study's `objective` attribute) or condition functions differ is skipped whole:
  its scores measure something else;
- the new space is walked as a trial of it would be (`when:` conditions read the new file's fixed values and the
  values taken so far): each key it searches takes the trial's value, or, where the source did not search that key
  at all, the value the trial trained with (the source's fixed value, else Config's default). A key the source
  searched but that trial never chose (the other branch of a condition) leaves it without a value: skipped. A value
  outside the new range or choices skips the trial;
- keys the new space does not search are dropped: fixed keys take the new file's value;
- epochs beyond the new budget (asha.max_t) are cut: a trial enters COMPLETE if it reached the new budget, else
  PRUNED at its last epoch (by this search's measure, a complete trial of a shorter budget stopped early);
- a trial that an earlier warm start copied keeps its origin, and one reached twice is taken once;
- a start point of the new file that a taken trial has tried already (the same values) is not queued again.

Added trials carry where they came from as user attributes (`warm_start_from`, `warm_start_trial`,
`warm_start_run`); the study's `warm_start` attribute and `<experiment>/warm_start.json` keep the counts.
Imports no Ray: preflight fits the trials before Ray starts, so a bad folder costs one line, not a Ray start.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import yaml
from optuna.trial import FixedTrial, FrozenTrial, TrialState, create_trial

from cvae.config import Config
from cvae.errors import first_line
from cvae.inputs import user_path

from ..spec import SearchConfigError, SearchError, SearchSpec, parse_search_config
from .files import JOURNAL, SEARCH_CONFIG, WARM_START
from .study import TENSORBOARD_RUN, StudyError, load_study

# User attributes of a trial added by a warm start.
FROM, TRIAL, RUN, VIA, DROPPED = (
    "warm_start_from",  # the experiment folder that ran it
    "warm_start_trial",  # its Optuna trial number there
    "warm_start_run",  # its TensorBoard run (trial folder) there
    "warm_start_via",  # the source it was read from, when that one had copied it itself
    "warm_start_dropped",  # its keys the new space does not search
)
STUDY_ATTR = "warm_start"  # the new study's record of the warm start


class WarmStartError(SearchError):
    """A --warm-start folder that cannot be read as an earlier experiment; one line."""


@dataclass
class Source:
    """An earlier experiment: its folder, its study (read-only) and its search file."""

    folder: Path
    study: optuna.Study
    spec: SearchSpec

    @property
    def objective(self) -> str:
        return self.study.user_attrs.get("objective") or self.spec.metric


def load_source(path) -> Source:
    """An earlier experiment folder, checked: it exists, holds a journal with one study, and its search file."""
    folder = user_path(path)
    where = f"--warm-start {path}"
    if not folder.exists():
        raise WarmStartError(f"{where}: no such folder; pass an earlier experiment's folder <storage>/<name>")
    if not folder.is_dir():
        raise WarmStartError(f"{where}: not a folder; pass an earlier experiment's folder <storage>/<name>")
    for file in (JOURNAL, SEARCH_CONFIG):
        if not (folder / file).is_file():
            raise WarmStartError(f"{where}: no {file}; is it a search's experiment folder?")
    try:
        spec = parse_search_config(yaml.safe_load((folder / SEARCH_CONFIG).read_text()), path=folder / SEARCH_CONFIG)
    except (SearchConfigError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise WarmStartError(f"{where}: its {SEARCH_CONFIG} is not a valid search file ({first_line(err)})") from None
    try:
        study = load_study(folder, read_only=True)
    except StudyError as err:
        raise WarmStartError(f"{where}: {err}") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:  # a damaged journal: bad JSON, bad records
        raise WarmStartError(f"{where}: {JOURNAL} is not a readable Optuna journal ({first_line(err)})") from None
    return Source(folder.resolve(), study, spec)


def load_sources(paths) -> list[Source]:
    sources = [load_source(path) for path in paths]
    folders = [s.folder for s in sources]
    for path, folder in zip(paths, folders):
        if folders.count(folder) > 1:
            raise WarmStartError(f"--warm-start {path}: named twice; name each earlier experiment once")
    return sources


@dataclass
class WarmStart:
    """The trials a warm start adds to the new study, and what it took, skipped and dropped."""

    sources: list[str]
    trials: list[FrozenTrial] = field(default_factory=list)
    taken: Counter = field(default_factory=Counter)  # source folder -> trials taken
    skipped: Counter = field(default_factory=Counter)  # reason -> trials
    dropped: Counter = field(default_factory=Counter)  # key -> trials that had it
    shortened: int = 0  # complete trials of a shorter budget, taken as pruned
    points_tried: int = 0  # start points of the new file a taken trial has tried already
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict:
        """What warm_start.json and the study's `warm_start` attribute hold."""
        states = Counter(t.state.name for t in self.trials)
        return {
            "sources": self.sources,
            "taken": len(self.trials),
            "taken_from": dict(self.taken),
            "complete": states["COMPLETE"],
            "pruned": states["PRUNED"],
            "complete_taken_as_pruned": self.shortened,
            "start_points_tried_already": self.points_tried,
            "skipped": sum(self.skipped.values()),
            "skipped_by_reason": dict(self.skipped.most_common()),
            "dropped_keys": dict(self.dropped.most_common()),
            "notes": self.notes,
        }

    def lines(self) -> list[str]:
        """The console's (and report.md's) account: taken, skipped and why, dropped keys, notes."""
        return summary_lines(self.record())

    def untried(self, points: list[dict]) -> list[dict]:
        """The start points no warm-started trial has tried already (one with the same values for its keys)."""
        tried = [t.params for t in self.trials]
        return [p for p in points if not any(all(k in t and t[k] == v for k, v in p.items()) for t in tried)]

    def add_to(self, study) -> None:
        """Add the trials to the new study (before its first suggestion) and record the counts on it."""
        study.add_trials(self.trials)
        study.set_user_attr(STUDY_ATTR, self.record())


def summary_lines(record: dict) -> list[str]:
    """A warm start's record (`WarmStart.record`, or a warm_start.json) in a few lines."""
    taken_from, sources = record.get("taken_from") or {}, record.get("sources") or []
    plural = "s" if len(sources) != 1 else ""
    lines = [
        f"warm start: {record.get('taken', 0)} trials taken from {len(sources)} earlier experiment{plural} "
        f"({', '.join(f'{folder}: {n}' for folder, n in taken_from.items()) or 'none'}): "
        f"{record.get('complete', 0)} complete, {record.get('pruned', 0)} pruned"
    ]
    if record.get("complete_taken_as_pruned"):
        lines.append(
            f"  {record['complete_taken_as_pruned']} complete trials of a shorter budget taken as pruned at their "
            "last epoch"
        )
    reasons = ", ".join(f"{n} {reason}" for reason, n in (record.get("skipped_by_reason") or {}).items())
    lines.append(f"  skipped {record.get('skipped', 0)}" + (f": {reasons}" if reasons else ""))
    if record.get("start_points_tried_already"):
        lines.append(f"  {record['start_points_tried_already']} start points tried already: not run again")
    if record.get("dropped_keys"):
        keys = ", ".join(f"{key} ({n})" for key, n in record["dropped_keys"].items())
        lines.append(f"  dropped keys the new space does not search (trials): {keys}")
    return lines + [f"  note: {note}" for note in record.get("notes") or []]


def carried_over(experiment_dir) -> WarmStart | None:
    """The warm start of an experiment whose search is started again from scratch (a --resume of one killed
    before Tune saved any state, whose journal is set aside): its copied trials, read back from that journal."""
    record = read_record(experiment_dir)
    if record is None or not Path(experiment_dir, JOURNAL).is_file():
        return None
    trials = [t for t in load_study(experiment_dir, read_only=True).trials if FROM in t.user_attrs]
    return WarmStart(
        sources=list(record.get("sources") or []),
        trials=trials,
        taken=Counter(record.get("taken_from") or {}),
        skipped=Counter(record.get("skipped_by_reason") or {}),
        dropped=Counter(record.get("dropped_keys") or {}),
        shortened=record.get("complete_taken_as_pruned", 0),
        points_tried=record.get("start_points_tried_already", 0),
        notes=list(record.get("notes") or []),
    )


def read_record(experiment_dir) -> dict | None:
    """An experiment's warm_start.json (what its --warm-start took), or None when it started cold."""
    path = Path(experiment_dir) / WARM_START if experiment_dir else None
    if path is None or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (ValueError, OSError):
        return None
    return record if isinstance(record, dict) and "taken_from" in record else None


def prepare(paths, spec: SearchSpec) -> WarmStart:
    """Read the earlier experiments at `paths` and fit their trials to `spec` (nothing is written)."""
    sources = load_sources(paths)
    warm, seen = WarmStart(sources=[str(s.folder) for s in sources]), set()
    for source in sources:
        trials = source.study.get_trials(deepcopy=False)
        mismatch = source_mismatch(source, spec)
        if mismatch:
            warm.skipped[mismatch] += len(trials)
            continue
        warm.notes += differences(source, spec)
        for trial in trials:
            origin = (trial.user_attrs.get(FROM) or str(source.folder), trial.user_attrs.get(TRIAL, trial.number))
            fitted = fit_trial(trial, source, spec) if origin not in seen else "reached twice (taken once)"
            if isinstance(fitted, str):
                warm.skipped[fitted] += 1
                continue
            seen.add(origin)
            warm.trials.append(fitted)
            warm.taken[str(source.folder)] += 1
            warm.dropped.update(fitted.user_attrs.get(DROPPED, []))
            warm.shortened += trial.state == TrialState.COMPLETE and fitted.state == TrialState.PRUNED
    warm.points_tried = len(spec.start_points) - len(warm.untried(spec.start_points))
    return warm


def source_mismatch(source: Source, spec: SearchSpec) -> str | None:
    """Why none of the source's trials can be taken (another objective, other functions), or None."""
    if source.objective != spec.metric:
        return f"objective {source.objective}, not {spec.metric}"
    if list(source.spec.functions) != list(spec.functions):
        return "other condition functions"
    return None


def differences(source: Source, spec: SearchSpec) -> list[str]:
    """A note when the source trained its trials with other constant settings (budget, fixed keys, data)."""
    changes = []
    if source.spec.max_t != spec.max_t:
        changes.append(f"asha.max_t {source.spec.max_t} (now {spec.max_t})")
    for key in sorted((set(source.spec.fixed) | set(spec.fixed)) - set(spec.space) - set(source.spec.space)):
        before, now = trained_with(source.spec, key), trained_with(spec, key)
        if before != now:
            changes.append(f"{key} {before} (now {now})")
    theirs, ours = source.spec.data.model_dump(), spec.data.model_dump()
    changes += [f"data.{key} {theirs[key]} (now {ours[key]})" for key in ours if theirs.get(key) != ours[key]]
    if not changes:
        return []
    return [f"{source.folder} trained its trials with {', '.join(changes)}; their scores are taken as they are"]


def trained_with(spec: SearchSpec, key: str):
    """The value of a key not searched in `spec`'s trials: its fixed value, else Config's default."""
    if key in spec.fixed:
        return spec.fixed[key]
    return Config.model_fields[key].get_default(call_default_factory=True)


def fit_trial(trial: FrozenTrial, source: Source, spec: SearchSpec) -> FrozenTrial | str:
    """The trial as the new study holds it, or why it does not fit (the rules: this module's docstring)."""
    if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
        return {TrialState.FAIL: "failed"}.get(trial.state, f"unfinished ({trial.state.name.lower()})")
    params = new_params(trial, source, spec)
    if isinstance(params, str):
        return params
    steps = {int(step): v for step, v in trial.intermediate_values.items() if step <= spec.max_t}
    if trial.state == TrialState.COMPLETE and source.spec.max_t == spec.max_t:
        state, value = TrialState.COMPLETE, trial.value
    elif spec.max_t in steps:  # it reached this search's full budget
        state, value = TrialState.COMPLETE, steps[spec.max_t]
    elif steps:
        state, value = TrialState.PRUNED, None
    else:
        return "no epoch within this search's budget"
    probe = FixedTrial(params)  # the new space's own distributions for these values, as its trials get them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec.optuna_space()(probe)
    attrs = {
        FROM: trial.user_attrs.get(FROM) or str(source.folder),
        TRIAL: trial.user_attrs.get(TRIAL, trial.number),
        RUN: trial.user_attrs.get(RUN) or trial.user_attrs.get(TENSORBOARD_RUN, ""),
    }
    if trial.user_attrs.get(FROM):
        attrs[VIA] = str(source.folder)
    dropped = sorted(set(trial.params) - set(probe.params))
    if dropped:
        attrs[DROPPED] = dropped
    try:
        return create_trial(
            state=state,
            value=value,
            params=probe.params,
            distributions=probe.distributions,
            intermediate_values=steps,
            user_attrs=attrs,
        )
    except ValueError as err:  # e.g. a value Optuna refuses
        return f"not a valid trial ({first_line(err)})"


def new_params(trial: FrozenTrial, source: Source, spec: SearchSpec) -> dict | str:
    """The trial's values for the keys the new space searches in it, or why it has none that fit."""
    chosen, params = dict(spec.fixed), {}
    for key, param in spec.space.items():  # in the order keys are chosen: conditions first
        if not param.applies(chosen):
            continue
        if key in trial.params:
            value = trial.params[key]
        elif key in source.spec.space:
            return f"no {key} (not chosen in that trial)"
        else:
            value = trained_with(source.spec, key)
        if not param.contains(value):
            return f"{key} outside the new space"
        params[key] = chosen[key] = value
    return params
