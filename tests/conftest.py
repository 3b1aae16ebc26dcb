"""Test session set-up. Fixtures live in tests/fixtures/, one module per area."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures.models",
    "tests.fixtures.opensearch",
    "tests.fixtures.redis",
]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers mean what they say.

    - A test is either ``unit`` (no service) or needs services (``integration``/
      ``e2e``); both at once would let ``-m unit`` start a service, so it is a
      collection error.
    - ``unit`` is the fast suite: with a ``-m`` expression that names ``unit`` but
      not ``slow``, tests marked ``slow`` (model training, whole evals) are left
      out; run them with ``-m slow`` (or ``-m "unit or slow"``).
    """
    _check_exclusive(items)
    expression = config.option.markexpr or ""
    if "unit" in expression and "slow" not in expression:
        slow = [item for item in items if item.get_closest_marker("slow") is not None]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [item for item in items if item.get_closest_marker("slow") is None]


def _check_exclusive(items: list[pytest.Item]) -> None:
    for item in items:
        names = {mark.name for mark in item.iter_markers()}
        if "unit" in names and names & {"integration", "e2e"}:
            raise pytest.UsageError(
                f"{item.nodeid} is marked both unit and {sorted(names & {'integration', 'e2e'})}; "
                "mark the service-backed parameter or test only"
            )
