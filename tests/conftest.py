"""Shared fixtures: one local Ray per test module, on 127.0.0.1 and without a dashboard."""

import os
import tempfile
from pathlib import Path

import pytest

from search.runner import loopback_only

loopback_only()  # before any test imports ray: every Ray the tests start listens on 127.0.0.1 only
# The key that signs experiment folders (search/trust.py): the tests' own, not the user's ~/.config/twobirds.
os.environ.setdefault("TWOBIRDS_CONFIG_DIR", tempfile.mkdtemp(prefix="twobirds-test-config-"))

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "search" / "configs" / "smoke.yaml"


@pytest.fixture(scope="module")
def ray_local():
    """A 2-CPU Ray for the module's tests (started once: Ray takes ~9 s to start on 2 cores)."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, dashboard_host="127.0.0.1", log_to_driver=False)
    yield ray
    ray.shutdown()
