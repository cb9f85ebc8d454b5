"""Test helpers shared by several test files."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "twobirds"
VALIDATION = SHARED / "validation_dataset.pt"
SAMPLE_SUBMISSION = SHARED / "sample_submission.pt"

needs_shared = pytest.mark.skipif(
    not VALIDATION.is_file(), reason=f"reference data absent: {SHARED} (only in the project's workspace)"
)
