"""Hypothesis profiles: `default` for `make test`, `thorough` via HYPOTHESIS_PROFILE=thorough."""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `root` (network namespaces, iptables) run only as root, as `make test` in CI
    does; elsewhere they are deselected, and the count is reported."""
    if os.geteuid() == 0:
        return
    root = [item for item in items if item.get_closest_marker("root")]
    if root:
        config.hook.pytest_deselected(items=root)
        items[:] = [item for item in items if not item.get_closest_marker("root")]
