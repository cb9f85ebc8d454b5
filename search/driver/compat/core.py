"""Ray's core and cluster internals (entries 3, 5, 6, 8, 25 of search/driver/compat/__init__.py)."""

from __future__ import annotations

from .base import (
    LOOPBACK,
    _attribute,
)

# 3. `ray start` on loopback

_ray_resolve = None  # Ray's own resolve_ip_for_localhost, once keep_loopback_in_ray_start replaced it


def keep_loopback(host: str) -> str:
    """127.0.0.1 / localhost stay 127.0.0.1; any other host resolves as Ray does."""
    if host in LOOPBACK:
        return "127.0.0.1"
    import ray._private.services as services

    return (_ray_resolve or services.resolve_ip_for_localhost)(host)


def keep_loopback_in_ray_start() -> None:
    """Make Ray's CLI in this process keep a loopback node or head address as given (idempotent)."""
    global _ray_resolve
    import ray._private.services as services

    if _ray_resolve is None:
        _ray_resolve = _attribute(services, "resolve_ip_for_localhost", owner="ray._private.services")
        services.resolve_ip_for_localhost = keep_loopback


# 5. ray.init's temp folder


def temp_dir_kwargs(folder: str) -> dict:
    """ray.init keyword arguments that put a new local Ray's temp folder (sockets, logs, session) in `folder`."""
    return {"_temp_dir": folder}


# 6. the GCS's actor table


def gcs_actors() -> dict:
    """actor id -> the GCS's record of it (dead actors included); needs a connected ray."""
    import ray._private.state

    return _attribute(ray._private.state, "actors", owner="ray._private.state")()


# 8. `ray up`'s validation


def validated_launcher_config(config: dict) -> dict:
    """A cluster launcher config merged with its provider's defaults and validated, as `ray up` does."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    merged = prepare_config(config)
    validate_config(merged)
    return merged


# 25. Ray's auth token cache


def forget_auth_token() -> None:
    """Make this process read Ray's authentication settings and token afresh at the next ray.init (entry 25)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
