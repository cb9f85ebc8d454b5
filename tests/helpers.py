"""Test helpers shared by several test files."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "twobirds"
VALIDATION = SHARED / "validation_dataset.pt"
SAMPLE_SUBMISSION = SHARED / "sample_submission.pt"

needs_shared = pytest.mark.skipif(
    not VALIDATION.is_file(), reason=f"reference data absent: {SHARED} (only in the project's workspace)"
)


def run_script(script: str, *args, timeout: float = 120, env=None) -> subprocess.CompletedProcess:
    """scripts/<script>.py run as a user would, in the checkout; the result carries its wall time in .seconds."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, f"scripts/{script}.py", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    done.seconds = time.perf_counter() - started
    return done
