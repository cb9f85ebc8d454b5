"""The shape a machine checks: one error root (every exception class the project defines is a
`cvae.errors.UserError`, so every command prints it as one line, exit 2, and a bug keeps its traceback), and
no Ray before a search starts."""

import importlib
import inspect
import pkgutil

import cluster
import cvae
import scripts
import search
from cvae.errors import UserError


def _modules():
    for package in (cvae, search, scripts, cluster):
        yield package
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            if info.name != "cluster.__main__":  # runs the command line on import
                yield importlib.import_module(info.name)


def test_every_exception_the_project_defines_is_a_user_error():
    defined = {
        obj
        for module in _modules()
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, BaseException) and obj.__module__.split(".")[0] in ("cvae", "search", "scripts", "cluster")
    }
    assert len(defined) >= 15  # the walk reached the packages
    assert sorted(c.__qualname__ for c in defined if not issubclass(c, UserError)) == []


def test_importing_search_and_checking_a_search_file_loads_no_ray(repo):
    import subprocess
    import sys

    code = (
        "import sys, search; spec = search.load_search_config('search/configs/smoke.yaml'); "
        "print('ray' in sys.modules, spec.metric)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "val_score"], done.stderr
