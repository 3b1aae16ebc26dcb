"""ImageScope inside OpenSearch's own search path: connector, model, search pipeline.

An existing client keeps its query and adds ``?search_pipeline=<name>``. The
pipeline has two response processors, both OpenSearch's own:

1. ``ml_inference`` (ml-commons) sends the request's query object
   (``$._request.query``) and the hits' uri field (``fields.uri``) to a remote
   model whose connector POSTs them to ImageScope's ``/v1/score`` endpoint; the
   answer (one score, one explanation and one ``reranked`` flag per hit, in the
   hits' order) is written into each hit's ``_source`` as ``imagescope_score``,
   ``imagescope_explanation`` and ``imagescope_reranked``.
2. ``rerank`` (neural-search) with ``by_field: imagescope_score`` sorts the
   hits by that score.

The endpoint has a deadline: past it, it answers scores that keep the original
order and ``reranked: false``, so hits come back in OpenSearch's order with the
flag, never an error. A query whose text cannot be found (see
``api/score_routes.py``) is a clear HTTP 400 that OpenSearch passes on.

:func:`install` is idempotent: an existing connector, model and pipeline with
the same configuration are kept; a changed one is replaced. :func:`uninstall`
removes all three. Needs the ml-commons and neural-search plugins and, on the
node, ``plugins.ml_commons.trusted_connector_endpoints_regex`` matching the
endpoint and ``plugins.ml_commons.only_run_on_ml_node: false`` (or an ML node).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from opensearchpy import OpenSearch

from imagescope.errors import BackendError, ConfigError
from imagescope.store.opensearch_client import Requester, error_type

log = logging.getLogger(__name__)

SCORE_FIELD = "imagescope_score"
EXPLANATION_FIELD = "imagescope_explanation"
FLAG_FIELD = "imagescope_reranked"
ML = "/_plugins/_ml"
DEPLOY_WAIT_S = 60.0


@dataclass(frozen=True)
class PipelineSpec:
    """What :func:`install` registers."""

    name: str
    endpoint: str
    uri_field: str
    deadline_ms: int = 3000
    api_key: str | None = None
    stages: tuple[int, ...] = (2,)

    @property
    def connector_name(self) -> str:
        return f"imagescope-{self.name}"


@dataclass
class Installed:
    """Ids of what exists after :func:`install`, and what was created this time."""

    connector_id: str = ""
    model_id: str = ""
    pipeline: str = ""
    created: list[str] = field(default_factory=list)


def connector_body(spec: PipelineSpec) -> dict[str, Any]:
    """The ml-commons HTTP connector to ``<endpoint>/v1/score``."""
    # ml-commons stores credentials encrypted and requires one: the API key
    # (or a placeholder when the endpoint has none configured).
    headers = {"content-type": "application/json", "X-API-Key": "${credential.api_key}"}
    request = (
        '{ "query": ${parameters.query}, "uris": ${parameters.uris}, '
        '"deadline_ms": ${parameters.deadline_ms}, "stages": ${parameters.stages} }'
    )
    timeout_s = max(5, spec.deadline_ms // 1000 + 5)
    return {
        "name": spec.connector_name,
        "description": "ImageScope stage-2 scores for the hits of a search",
        "version": "1",
        "protocol": "http",
        "credential": {"api_key": spec.api_key or "none"},
        "parameters": {
            "endpoint": spec.endpoint.rstrip("/"),
            # Changes with the key, so install() replaces a connector with an old key.
            "key_id": hashlib.sha256((spec.api_key or "").encode()).hexdigest()[:12],
            "deadline_ms": str(spec.deadline_ms),
            "stages": json.dumps(list(spec.stages)),
        },
        "actions": [
            {
                "action_type": "predict",
                "method": "POST",
                "url": "${parameters.endpoint}/v1/score",
                "headers": headers,
                "request_body": request,
            }
        ],
        "client_config": {
            "max_connection": 20,
            "connection_timeout": 2000,
            "read_timeout": timeout_s * 1000,
            "max_retry_times": 0,
        },
    }


def pipeline_body(spec: PipelineSpec, model_id: str) -> dict[str, Any]:
    """The search pipeline: ``ml_inference`` then ``rerank`` by the score field."""
    return {
        "description": f"ImageScope rerank (stages {list(spec.stages)}) via {spec.endpoint}",
        "response_processors": [
            {
                "ml_inference": {
                    "tag": "imagescope_score",
                    "model_id": model_id,
                    "function_name": "remote",
                    "input_map": [{"query": "$._request.query", "uris": spec.uri_field}],
                    "output_map": [
                        {
                            SCORE_FIELD: "scores",
                            EXPLANATION_FIELD: "explanations",
                            FLAG_FIELD: "reranked",
                        }
                    ],
                    "one_to_one": False,
                    "override": True,
                    "ignore_missing": False,
                    "ignore_failure": False,
                }
            },
            {"rerank": {"by_field": {"target_field": SCORE_FIELD, "keep_previous_score": True}}},
        ],
    }


class PipelineInstaller:
    """Registers and removes the connector, model and pipeline on one cluster."""

    def __init__(self, client: OpenSearch, requests: Requester) -> None:
        self.client = client
        self.requests = requests

    def _request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        def send() -> Any:
            return self.client.transport.perform_request(method, path, body=body)

        try:
            result: dict[str, Any] = self.requests.call(f"{method} {path}", send)
        except BackendError as exc:
            if error_type(exc) == "illegal_argument_exception" and "_plugins/_ml" in path:
                raise ConfigError(f"ml-commons refused {path}: {exc}") from exc
            raise
        return result

    def _find(self, kind: str, name: str) -> list[dict[str, Any]]:
        body = {"size": 50, "query": {"term": {"name.keyword": name}}}
        try:
            found = self._request("POST", f"{ML}/{kind}/_search", body)
        except BackendError as exc:
            if "index_not_found" in str(exc) or "no such index" in str(exc).lower():
                return []
            raise
        return [{"_id": h["_id"], **h["_source"]} for h in found["hits"]["hits"]]

    def _pipeline(self, name: str) -> dict[str, Any] | None:
        found = self.requests.call_or_none(
            "read the search pipeline",
            self.client.transport.perform_request,
            method="GET",
            url=f"/_search/pipeline/{name}",
        )
        return found.get(name) if isinstance(found, dict) else None

    @staticmethod
    def _same_connector(found: dict[str, Any], wanted: dict[str, Any]) -> bool:
        """Same parameters and actions (ml-commons hides headers and upper-cases types)."""

        def actions(spec: dict[str, Any]) -> list[tuple[str, ...]]:
            return [
                (str(a.get("action_type", "")).lower(), a.get("method", ""), a.get("url", ""))
                + (a.get("request_body", ""),)
                for a in spec.get("actions") or []
            ]

        same_params = found.get("parameters") == wanted["parameters"]
        return same_params and actions(found) == actions(wanted)

    def _deploy(self, model_id: str) -> None:
        self._request("POST", f"{ML}/models/{model_id}/_deploy")
        deadline = time.monotonic() + DEPLOY_WAIT_S
        while time.monotonic() < deadline:
            state = self._request("GET", f"{ML}/models/{model_id}").get("model_state")
            if state == "DEPLOYED":
                return
            time.sleep(0.5)
        raise BackendError(f"model {model_id} was not deployed within {DEPLOY_WAIT_S:.0f} s")

    def _connector_and_model(self, spec: PipelineSpec, out: Installed) -> None:
        wanted = connector_body(spec)
        connectors = self._find("connectors", spec.connector_name)
        models = self._find("models", spec.connector_name)
        keep = next((c for c in connectors if self._same_connector(dict(c), wanted)), None)
        model = next((m for m in models if keep and m.get("connector_id") == keep["_id"]), None)
        if keep is None or model is None:
            self._remove_models(models)
            for stale in connectors:
                self._request("DELETE", f"{ML}/connectors/{stale['_id']}")
            keep = {
                "_id": self._request("POST", f"{ML}/connectors/_create", wanted)["connector_id"]
            }
            out.created.append(f"connector {keep['_id']} ({spec.connector_name})")
            body = {"name": spec.connector_name, "function_name": "remote"}
            body["connector_id"] = keep["_id"]
            model = {"_id": self._request("POST", f"{ML}/models/_register", body)["model_id"]}
            out.created.append(f"model {model['_id']} ({spec.connector_name})")
        if model.get("model_state") != "DEPLOYED":
            self._deploy(model["_id"])
        out.connector_id, out.model_id = keep["_id"], model["_id"]

    def install(self, spec: PipelineSpec) -> Installed:
        """Connector, model and pipeline as ``spec`` says; reuses what already matches."""
        out = Installed(pipeline=spec.name)
        self._connector_and_model(spec, out)
        wanted = pipeline_body(spec, out.model_id)
        if self._pipeline(spec.name) != wanted:
            self._request("PUT", f"/_search/pipeline/{spec.name}", wanted)
            out.created.append(f"search pipeline {spec.name}")
        return out

    def _remove_models(self, models: list[dict[str, Any]]) -> list[str]:
        removed = []
        for model in models:
            self._request("POST", f"{ML}/models/{model['_id']}/_undeploy")
            self._request("DELETE", f"{ML}/models/{model['_id']}")
            removed.append(f"model {model['_id']}")
        return removed

    def uninstall(self, name: str) -> list[str]:
        """Remove the pipeline, model and connector of ``name``; what was removed."""
        removed = []
        if self._pipeline(name) is not None:
            self._request("DELETE", f"/_search/pipeline/{name}")
            removed.append(f"search pipeline {name}")
        connector_name = PipelineSpec(name=name, endpoint="", uri_field="").connector_name
        removed += self._remove_models(self._find("models", connector_name))
        for connector in self._find("connectors", connector_name):
            self._request("DELETE", f"{ML}/connectors/{connector['_id']}")
            removed.append(f"connector {connector['_id']}")
        return removed
