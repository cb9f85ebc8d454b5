"""Everything a search checks before Ray is imported: the experiment name, the storage, the search file
(or on --resume its saved copy and who signed the folder), the cluster address, the data.

Each raises a `SearchError` whose message is one line naming the input and the fix, so a typo or
a cluster that is not there costs a second, not a Ray start followed by a traceback or a hang.
`prepare` runs them all and returns the `Plan` that search.driver.run carries out. Imports no Ray.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from cvae.data import DataFileError
from cvae.inputs import user_path
from cvae.lines import POINTS

from ..spec import SearchConfigError, SearchError, SearchSpec, load_search_config, parse_search_config
from . import trust, warm_start
from .compat import loopback_only
from .files import SEARCH_CONFIG, TUNER_STATE
from .storage import Storage

CONNECT_TIMEOUT_S = 3.0  # a listening Ray answers a TCP connect in milliseconds, even across a network
RAY_CLIENT_PORT = 10001
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_name(name: str) -> str:
    """An experiment name is one folder name: letters, digits, '.', '_', '-', not starting with a dot.

    Anything else ('../x', 'a/b', '/abs', '') would put the experiment outside --storage or nowhere.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SearchError(
            f"--name {name!r}: must be one folder name (letters, digits, '.', '_' and '-', at most 128, "
            "not starting with '.' or '-'); the experiment is written to <storage>/<name>/"
        )
    return name


def check_storage(storage: str) -> None:
    """A local --storage must be a folder or not exist yet (it is created); never a file."""
    if "://" in str(storage):
        return
    path = user_path(storage)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise SearchError(f"--storage {storage}: {candidate} is a file, not a folder; pass a folder")
            if not os.access(candidate, os.W_OK | os.X_OK):
                raise SearchError(f"--storage {storage}: {candidate} is not writable by this user")
            return


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of 'host:port', '[v6]:port' or 'ray://host[:port]'; None for 'auto' and the like."""
    text = address
    default_port = None
    if text.startswith("ray://"):
        text, default_port = text[len("ray://") :], RAY_CLIENT_PORT
    elif "://" in text:
        return None
    text = text.split("/", 1)[0]
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:]+)(?::(\d+))?", text)
    if not match:
        return None
    host = match.group(1) or match.group(3)
    port = match.group(2) or match.group(4)
    if port is None:
        if default_port is None:
            return None
        port = default_port
    port = int(port)
    if not 0 < port < 65536:
        raise SearchError(f"--address {address}: port {port} is out of range (1-65535)")
    return host, port


def is_loopback(address: str) -> bool:
    parsed = _host_port(address) if address else None
    return parsed is not None and parsed[0] in LOOPBACK_HOSTS


def probe_address(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail in seconds when nothing listens at a host:port (or ray://host:port) --address.

    ray.init itself retries an unreachable GCS for minutes (and a Ray client server for ~30 s);
    one bounded TCP connect tells a stopped or mistyped cluster apart first. 'auto' and other
    forms are left to Ray.
    """
    if address in (None, "", "local", "auto"):
        return
    parsed = _host_port(address)
    if parsed is None:
        return
    host, port = parsed
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except TimeoutError:
        reason = f"no answer within {timeout:g} s"
    except socket.gaierror:
        raise SearchError(f"--address {address}: unknown host {host!r}; check the address") from None
    except OSError as err:
        reason = err.strerror or type(err).__name__
        reason = reason[0].lower() + reason[1:]
    start = "`ray start --head`" if not address.startswith("ray://") else "the cluster's Ray client server"
    raise SearchError(
        f"--address {address}: nothing answers there ({reason}); start {start} there, check the port, "
        "or drop --address to run on this machine"
    )


def build_data(spec: SearchSpec):
    """The search's training and validation data, built (and the data files read) before Ray starts."""
    try:
        data = spec.data.build(spec.functions)
    except (DataFileError, ValueError) as err:  # ValueError: e.g. uniform_branch targets without exact solutions
        raise SearchConfigError(f"data: {err}") from None
    for key, part in (("train_file", data[0]), ("val_file", data[1])):
        points = part[0].shape[-2]
        if points != POINTS:
            name = getattr(spec.data, key) or "synthetic data"
            raise SearchConfigError(f"data.{key}: {name} has lines of {points} points; the model needs {POINTS}")
    return data


def is_local(address: str | None) -> bool:
    return address in (None, "", "local")


def read_spec(config_path, name: str, storage: Storage, resume: bool) -> SearchSpec:
    """The validated search file: the given one, or on --resume the experiment's saved copy."""
    if not resume:
        if config_path is None:
            raise SearchConfigError("--config: a search file is required (see search/configs/)")
        return load_search_config(config_path)
    if not storage.exists(name, SEARCH_CONFIG):
        raise SearchConfigError(
            f"--resume: {storage.experiment(name)} holds no {SEARCH_CONFIG}; check --name and --storage"
        )
    saved = storage.read_text(name, SEARCH_CONFIG)
    if config_path is not None and Path(config_path).read_text() != saved:
        raise SearchConfigError(
            f"--config {config_path} differs from the experiment's saved {SEARCH_CONFIG}; "
            "a resume continues the saved search: drop --config or use a new --name"
        )
    try:
        return parse_search_config(
            yaml.safe_load(saved), path=Path(storage.experiment(name), SEARCH_CONFIG), text=saved
        )
    except SearchConfigError as err:
        raise SearchConfigError(f"{storage.experiment(name)}/{SEARCH_CONFIG}: {err}") from None


def check_trust(storage: Storage, name: str, trusted: bool, action: str = "--resume") -> None:
    """Before Tune unpickles anything of the folder: its state files must be this project's own, or vouched for."""
    if trusted:
        doing = "resuming" if action == "--resume" else "extending"
        print(f"note: --trust: {doing} {storage.experiment(name)} without checking who wrote it", file=sys.stderr)
        trust.sign_folder(storage, name)
    else:
        trust.verify(storage, name, action=action)


# The parts of a search file that define its trials: a --more extension must not change them.
TRIAL_PARTS = ("functions", "data", "asha", "fixed", "space")


def search_changes(saved: SearchSpec, new: SearchSpec) -> list[str]:
    """What `new` changes in the trials `saved` defines (objective, functions, data, budget, fixed, space), in
    words; its run settings (samples, seed, resources, budget in seconds) and start points do not count."""
    changes = []
    if saved.search.objective != new.search.objective:
        changes.append(f"search.objective {saved.search.objective} -> {new.search.objective}")
    for part in TRIAL_PARTS:
        before, after = _plain(getattr(saved, part)), _plain(getattr(new, part))
        if not isinstance(before, dict):
            changes += [f"{part} changed"] if before != after else []
            continue
        for key in [*before, *(k for k in after if k not in before)]:
            if before.get(key) != after.get(key):
                how = "added" if key not in before else "removed" if key not in after else "changed"
                changes.append(f"{part}.{key} {how}")
    return changes


def _plain(value):
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return list(value) if isinstance(value, (list, tuple)) else value


def read_extended_spec(config_path, name: str, storage: Storage) -> SearchSpec:
    """--more: the experiment's saved search file; a --config that changes its trials is refused."""
    if not storage.exists(name, TUNER_STATE):
        raise SearchError(
            f"--more: {storage.experiment(name)} holds no finished search (no {TUNER_STATE}); "
            "check --name and --storage, or start the search without --more"
        )
    saved = read_spec(None, name, storage, resume=True)
    if config_path is None:
        return saved
    changes = search_changes(saved, load_search_config(config_path))
    if changes:
        shown = ", ".join(changes[:3]) + (f" and {len(changes) - 3} more" if len(changes) > 3 else "")
        raise SearchConfigError(
            f"--more: --config {config_path} changes the search of {name} ({shown}); --more adds trials to the same "
            f"search: start a new experiment that learns from it with --config {config_path} --name NEW "
            f"--warm-start {storage.experiment(name)}"
        )
    return saved


def check_modes(resume: bool, more: int | None, warm: tuple, overrides: dict) -> None:
    """Flags that do not go together: one line each."""
    if more is not None and resume:
        raise SearchError(
            "--more with --resume: --resume finishes an interrupted search, --more adds trials to a "
            "finished one; pass one"
        )
    if warm and (resume or more is not None):
        raise SearchError(
            f"--warm-start with {'--resume' if resume else '--more'}: --warm-start starts a new experiment; "
            "drop one of them"
        )
    if more is not None and overrides.get("num_samples") is not None:
        raise SearchError("--num-samples with --more: --more N is the number of trials added; drop --num-samples")


@dataclass
class Plan:
    """A search that passed every check: what search.driver.run carries out."""

    spec: SearchSpec
    name: str
    storage: Storage
    address: str | None
    resume: bool
    data: tuple
    warm_start: warm_start.WarmStart | None = None  # earlier experiments' trials for the new study
    more: int | None = None  # --more: trials added to a finished experiment


def prepare(
    config_path, name: str, storage, overrides: dict, address=None, resume=False, trust=False, warm=(), more=None
) -> Plan:
    """Check every input of a search, in the order a user would fix them, without importing Ray.

    warm: earlier experiment folders a new search learns from (--warm-start); more: trials to add to the
    finished experiment `name` (--more)."""
    check_name(name)
    check_storage(storage)
    check_modes(resume, more, tuple(warm), overrides)
    if is_local(address) or is_loopback(address):
        loopback_only()  # before ray is first imported: a local Ray (or a loopback address) stays on 127.0.0.1
    storage = Storage(storage)
    if more is not None:
        spec = read_extended_spec(config_path, name, storage).with_overrides(**{**overrides, "num_samples": more})
    else:
        spec = read_spec(config_path, name, storage, resume)
    if resume and any(v is not None for v in overrides.values()):
        print("note: --resume continues with the original run's samples, resources and budget", file=sys.stderr)
    spec = spec if resume or more is not None else spec.with_overrides(**overrides)
    if not resume and more is None and storage.exists(name):
        raise SearchError(
            f"--name {name}: {storage.experiment(name)} exists; pass --resume to finish it, --more N to add trials "
            "to it, or pick a new name"
        )
    if resume and storage.exists(name, TUNER_STATE):
        check_trust(storage, name, trust)
    if more is not None:  # the earlier runs' Tune state is read (their trials, whether they finished): ours only
        check_trust(storage, name, trust, action="--more")
    fitted = warm_start.prepare(warm, spec) if warm else None
    probe_address(address)  # seconds, not Ray's minutes of retries, when no cluster is there
    # Built once, here on the driver (trials receive it through the object store).
    return Plan(spec, name, storage, address, resume, build_data(spec), warm_start=fitted, more=more)
