"""Test session set-up. Fixtures live in tests/fixtures/, one module per area."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures.models",
    "tests.fixtures.opensearch",
    "tests.fixtures.redis",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test is either ``unit`` (no service) or needs services (``integration``/``e2e``).

    Both at once would let ``-m unit`` start a service, so it is a collection error.
    """
    for item in items:
        names = {mark.name for mark in item.iter_markers()}
        if "unit" in names and names & {"integration", "e2e"}:
            raise pytest.UsageError(
                f"{item.nodeid} is marked both unit and {sorted(names & {'integration', 'e2e'})}; "
                "mark the service-backed parameter or test only"
            )
