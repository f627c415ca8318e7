"""The OpenAPI document of the API: it describes every /api route with its responses, and
schemathesis exercises every operation against the app in-process (generated valid and invalid
input, with a token): no 500 anywhere, status codes, content types and bodies as documented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from stormwatch.web.app import WebState, create_app
from test_web_api import AUTH, TestClient, make_state

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebState]:
    st = make_state(tmp_path_factory.mktemp("openapi"), max_page_size=50)
    yield st
    st.store.close()


@pytest.fixture(scope="module")
def app(web: WebState):  # type: ignore[no-untyped-def]
    return create_app(state=web)


@pytest.fixture(scope="module")
def api_schema(app):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_document_covers_every_api_route(app) -> None:  # type: ignore[no-untyped-def]
    with TestClient(app) as c:
        doc = c.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path in ("/api/v1/level", "/api/v1/level/override", "/api/v1/surges", "/api/v1/ports", "/api/v1/ports/{port}",
                 "/api/v1/sources", "/api/v1/sources/{address}", "/api/v1/exploits", "/api/v1/campaigns",
                 "/api/v1/campaigns/{name}", "/api/v1/advisories", "/api/v1/advisories/{vuln}", "/api/v1/sessions",
                 "/api/v1/sessions/{session}", "/api/v1/events", "/api/v1/kb", "/api/v1/kb/{ident}",
                 "/api/v1/subscriptions", "/api/v1/subscriptions/{sub_id}", "/api/v1/export/stix",
                 "/api/v1/export/misp", "/api/v1/export/blocklist", "/api/v1/export/firewall", "/api/infocon",
                 "/api/port/{port}", "/api/porthistory/{port}/{start}/{end}", "/api/topports/{by}/{n}/{day}",
                 "/api/ip/{address}"):
        assert path in paths, path
    for path, ops in paths.items():
        if not path.startswith("/api"):
            continue
        for method, op in ops.items():
            assert "200" in op["responses"] or "201" in op["responses"], (method, path)
            assert "422" in op["responses"], (method, path)  # bad input is documented everywhere
            ok = op["responses"].get("200") or op["responses"]["201"]
            assert ok.get("content"), (method, path)
    # the ISC subset documents its formats
    port = paths["/api/port/{port}"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "application/xml", "text/plain"} <= set(port)


schema = schemathesis.pytest.from_fixture("api_schema")


# Checks left out, and why: negative_data_rejection flags input that pydantic accepts on purpose
# (a datetime given as epoch seconds, "1" for true); positive_data_acceptance flags schema-valid
# combinations that are refused for what they mean (an empty since/until window, a KB entry whose
# CVE does not match the pattern docs/kb.md gives); unsupported_method and allow_header_conformance
# want an Allow header on 405 answers, which Starlette's router does not send. Everything else
# runs: no 5xx, documented status codes, content types, headers and response bodies.
EXCLUDED = [schemathesis.checks.negative_data_rejection, schemathesis.checks.positive_data_acceptance,
            schemathesis.checks.unsupported_method, schemathesis.checks.allow_header_conformance]


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=AUTH, excluded_checks=EXCLUDED)


def test_module_scoped_store_exists(web: WebState) -> None:
    assert Path(web.store.path).exists()
