"""`ray start` for a node that lives on 127.0.0.1; local_cluster.py starts every node through it.

Ray's CLI replaces a loopback ``--node-ip-address`` or ``--address`` with this host's routable IP
(``ray._private.services.resolve_ip_for_localhost``): it assumes the nodes of a cluster sit on
different hosts. On one host that makes every node advertise, and its GCS and raylet listen on,
an address other machines can reach. Here a loopback address is kept as given; with node IP
127.0.0.1, Ray binds its GCS, raylet, object manager, agents and client server to 127.0.0.1 only
(checked by tests/test_cluster.py with ``ss``). Everything else is Ray's own ``ray start``.

    python cluster/loopback_ray.py start --head --node-ip-address=127.0.0.1 --port=6390 --block
"""

from __future__ import annotations

import sys

import ray._private.services as services
from ray.scripts.scripts import main

LOOPBACK = ("127.0.0.1", "localhost")
_resolve = services.resolve_ip_for_localhost


def keep_loopback(host: str) -> str:
    """127.0.0.1 / localhost stay 127.0.0.1; any other host resolves as Ray does."""
    return "127.0.0.1" if host in LOOPBACK else _resolve(host)


services.resolve_ip_for_localhost = keep_loopback

if __name__ == "__main__":
    sys.exit(main())
