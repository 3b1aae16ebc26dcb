"""The catalog index's life cycle in OpenSearch: generations behind one alias.

``settings.index`` names an alias. Each generation is a concrete index
``<alias>-v<N>``; the first is created together with the alias (one request),
later ones without it, and :meth:`CatalogIndex.swap_alias` moves the alias in
one atomic ``_aliases`` request, so readers always see exactly one complete
index. ``settings.index`` may also name a plain index (an adopted one): every
read and write works, only the alias operations are refused.
"""

from __future__ import annotations

import difflib
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from imagescope.errors import BackendError, ConfigError
from imagescope.settings import OpenSearchSettings
from imagescope.store.mappings import load_catalog_template, render_catalog_index
from imagescope.store.opensearch_client import Requester, error_reason, error_type

log = logging.getLogger(__name__)
#: Seconds between two looks at a running reindex task.
REINDEX_POLL_S = 0.5


class CatalogIndex:
    """Creates, inspects and swaps the concrete indices behind the catalog alias."""

    def __init__(self, requests: Requester, settings: OpenSearchSettings) -> None:
        self.requests = requests
        self.settings = settings
        self.alias = settings.index
        self.client = requests.client

    def read_mapping(self) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
        """(concrete index, properties, ``_meta``) behind the name, or ``None`` if absent."""
        found = self.requests.call_or_none(
            "read the mapping", self.client.indices.get_mapping, index=self.alias
        )
        if not found:
            return None
        if len(found) > 1:
            raise ConfigError(
                f"{self.alias!r} points at several indices ({', '.join(sorted(found))}); "
                "point settings.store.opensearch.index at one index or an alias of one"
            )
        index, body = next(iter(found.items()))
        mappings = body.get("mappings", {})
        return index, dict(mappings.get("properties", {})), dict(mappings.get("_meta", {}))

    def closest_names(self, limit: int = 3) -> list[str]:
        """Existing indices and aliases whose names look like ``settings.index``."""
        found = self.requests.call_or_none(
            "list indices", self.client.indices.get_alias, index="*,-.*"
        )
        names: set[str] = set()
        for index, body in (found or {}).items():
            names.add(index)
            names.update(body.get("aliases", {}))
        return difflib.get_close_matches(self.alias, sorted(names), n=limit, cutoff=0.5)

    def missing_error(self) -> ConfigError:
        """The error for a name that resolves to no index (with the closest names)."""
        close = self.closest_names()
        hint = f" (did you mean {' or '.join(repr(n) for n in close)}?)" if close else ""
        return ConfigError(
            f"OpenSearch has no index or alias {self.alias!r}{hint}. Set "
            "IMAGESCOPE_STORE__OPENSEARCH__INDEX to an existing one, or create a new "
            "catalog with `imagescope opensearch create-index`"
        )

    def add_fields(self, index: str, properties: dict[str, Any]) -> None:
        """Add fields to an index's mapping (existing fields cannot change)."""
        log.info("adding fields %s to index %s", sorted(properties), index)
        self.requests.call(
            "add fields to the mapping",
            self.client.indices.put_mapping,
            index=index,
            body={"properties": properties},
        )

    @contextmanager
    def refresh_paused(self, index: str) -> Iterator[None]:
        """``refresh_interval: -1`` on ``index`` while the block runs; then the
        catalog template's interval again (never a value read before, so two
        writers at once cannot leave it paused)."""
        template = load_catalog_template()["settings"]["index"].get("refresh_interval")
        self._set_refresh(index, "-1")
        try:
            yield
        finally:
            self._set_refresh(index, template)

    def _set_refresh(self, index: str, value: str | None) -> None:
        self.requests.call(
            "set the refresh interval",
            self.client.indices.put_settings,
            index=index,
            body={"index": {"refresh_interval": value}},
        )

    def generations(self) -> dict[str, int]:
        """Existing ``<alias>-v<N>`` indices -> N."""
        pattern = re.compile(rf"^{re.escape(self.alias)}-v(\d+)$")
        found = self.requests.call_or_none(
            "list index generations", self.client.indices.get_alias, index=f"{self.alias}-v*"
        )
        matches = (pattern.match(name) for name in (found or {}))
        return {m.group(0): int(m.group(1)) for m in matches if m}

    def create_generation(self, dim: int, *, with_alias: bool) -> str:
        """Create the next ``<alias>-v<N>`` for ``dim``-d vectors; its name.

        With ``with_alias`` the alias is added in the same request (first
        creation); an index created concurrently under the same name is reused.
        """
        name = f"{self.alias}-v{max(self.generations().values(), default=0) + 1}"
        body = render_catalog_index(self.settings, dim)
        if with_alias:
            body["aliases"] = {self.alias: {}}
        try:
            self.requests.call(
                "create the index", self.client.indices.create, index=name, body=body
            )
        except BackendError as exc:
            if error_type(exc) != "resource_already_exists_exception":
                raise
            log.info("index %s was created concurrently; using it", name)
            return name
        log.info("created index %s (%d-d, %s engine)", name, dim, self.settings.engine)
        return name

    def aliased_indices(self) -> list[str]:
        """The concrete indices the alias points at (empty when it is not an alias)."""
        found = self.requests.call_or_none(
            "read the alias", self.client.indices.get_alias, name=self.alias
        )
        return sorted(found or {})

    def swap_alias(self, new_index: str, *, delete_old: bool = False) -> list[str]:
        """Point the alias at ``new_index`` only, atomically; the indices it left."""
        old = [i for i in self.aliased_indices() if i != new_index]
        if self.alias in old or (not old and self._is_plain_index()):
            raise ConfigError(
                f"{self.alias!r} is an index, not an alias; alias operations need "
                "settings.store.opensearch.index to name an alias"
            )
        # Deleting an index drops its aliases too; a separate "remove" would then fail.
        leave = "remove_index" if delete_old else "remove"
        actions: list[dict[str, Any]] = [{"add": {"index": new_index, "alias": self.alias}}]
        for index in old:
            target = {"index": index} if delete_old else {"index": index, "alias": self.alias}
            actions.append({leave: target})
        self.requests.call(
            "move the alias", self.client.indices.update_aliases, body={"actions": actions}
        )
        log.info("alias %s now points at %s (was %s)", self.alias, new_index, old)
        return old

    def _is_plain_index(self) -> bool:
        found = self.requests.call_or_none(
            "check the index", self.client.indices.get_settings, index=self.alias
        )
        return found is not None and self.alias in found

    def copy_documents(self, source: str, target: str) -> int:
        """Server-side ``_reindex`` from ``source`` into ``target``; documents copied."""
        body = {"source": {"index": source}, "dest": {"index": target, "op_type": "index"}}
        started = self.requests.call(
            "start the reindex",
            self.client.reindex,
            body=body,
            params={"wait_for_completion": "false", "refresh": "true"},
        )
        while True:
            task = self.requests.call(
                "follow the reindex", self.client.tasks.get, task_id=started["task"]
            )
            if task.get("completed"):
                break
            time.sleep(REINDEX_POLL_S)
        response = task.get("response", {})
        failures = response.get("failures") or []
        if task.get("error") or failures:
            reason = error_reason(task.get("error") or failures[0])
            raise BackendError(f"reindex {source} -> {target} failed: {reason}")
        copied = int(response.get("total", 0))
        log.info("copied %d documents %s -> %s", copied, source, target)
        return copied
