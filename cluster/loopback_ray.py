"""`ray start` for a node that lives on 127.0.0.1; local_cluster.py starts every node through it.

Ray's CLI replaces a loopback ``--node-ip-address`` or ``--address`` with this host's routable IP
(``ray._private.services.resolve_ip_for_localhost``): it assumes the nodes of a cluster sit on
different hosts. On one host that makes every node advertise, and its GCS and raylet listen on,
an address other machines can reach. Here a loopback address is kept as given
(`search.driver.compat.keep_loopback_in_ray_start`, the one patch of Ray this project makes); with
node IP 127.0.0.1, Ray binds its GCS, raylet, object manager, agents and client server to
127.0.0.1 only (checked by tests/test_cluster.py with ``ss``). Everything else is Ray's own ``ray start``.

    python cluster/loopback_ray.py start --head --node-ip-address=127.0.0.1 --port=6390 --block
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's search/, as run_search.py

from search.driver.compat import keep_loopback, keep_loopback_in_ray_start

__all__ = ["keep_loopback", "main"]


def main():
    """Ray's own `ray` command line (`ray start ...`), with loopback addresses kept loopback."""
    keep_loopback_in_ray_start()
    from ray.scripts.scripts import main as ray_main

    return ray_main()


if __name__ == "__main__":
    sys.exit(main())
