"""The processes of a local cluster's nodes, read through psutil: trees, groups, command lines.

A zombie counts as dead everywhere here. Processes that end or cannot be read while being
looked at are skipped, never an error.
"""

from __future__ import annotations

import os

import psutil


def _live(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def alive(pid: int) -> bool:
    try:
        return _live(psutil.Process(pid))
    except psutil.Error:
        return False


def command_line(pid: int) -> str:
    """The process's arguments joined by spaces, or "" if it is gone or unreadable."""
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def descendants(root: int) -> dict[int, str]:
    """pid -> name of every live process below `root` or in its process group (not root itself).

    The group catches processes whose parent died before them (re-parented to init).
    """
    children: dict[int, list[int]] = {}
    names, out = {}, {}
    for proc in psutil.process_iter(["ppid", "name", "status"]):
        info = proc.info
        if info["status"] in (None, psutil.STATUS_ZOMBIE) or info["ppid"] is None:
            continue
        children.setdefault(info["ppid"], []).append(proc.pid)
        names[proc.pid] = info["name"]
        if proc.pid != root and _group(proc.pid) == root:
            out[proc.pid] = info["name"]
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out[child] = names[child]
            todo.append(child)
    return out


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def ancestors() -> set[int]:
    """This process and its parents: never to be killed by a sweep."""
    me = psutil.Process()
    try:
        return {me.pid, *(p.pid for p in me.parents())}
    except psutil.Error:
        return {me.pid}


def naming(marker: str) -> list[int]:
    """Pids of the live processes whose command line contains `marker`."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"]
        if cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(cmdline):
            found.append(proc.pid)
    return found
