"""Checks a search makes before Ray starts: the experiment name, the storage, the cluster address, the data.

Each raises a `SearchError` whose message is one line naming the input and the fix, so a typo or
a cluster that is not there costs a second, not a Ray start followed by a traceback or a hang.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from .space import SearchConfigError, SearchError

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
    path = Path(storage).expanduser()
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


def build_data(spec):
    """The search's training and validation data, built (and the data files read) before Ray starts."""
    from cvae.data import DataFileError
    from cvae.functions import FunctionPair
    from cvae.lines import POINTS

    try:
        data = spec.data.build(FunctionPair(spec.functions))
    except (DataFileError, ValueError) as err:  # ValueError: e.g. uniform_branch targets without exact solutions
        raise SearchConfigError(f"data: {err}") from None
    for key, part in (("train_file", data[0]), ("val_file", data[1])):
        points = part[0].shape[-2]
        if points != POINTS:
            name = getattr(spec.data, key) or "synthetic data"
            raise SearchConfigError(f"data.{key}: {name} has lines of {points} points; the model needs {POINTS}")
    return data
