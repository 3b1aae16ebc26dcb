"""The phone layout (390x844), and axe-core on the page's main states at both sizes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.catalog import ServedCatalog
from tests.e2e.conftest import LiveServer, screenshot
from tests.e2e.pages import (
    DESKTOP,
    PHONE,
    absent_pair,
    axe_violations,
    check_filters,
    expect,
    open_page,
    search_text,
    wait_reranked,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_on_a_phone_the_form_folds_and_the_results_come_into_view(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    page.set_viewport_size(PHONE)
    open_page(page, live_server, served_catalog)
    search_text(page, "orange circles")
    summary = page.locator("#query-summary")
    expect()(summary).to_contain_text("Text: orange circles")
    expect()(page.locator("#search-form")).to_be_hidden()
    first = page.locator("#results > li").first
    expect()(first).to_be_in_viewport()
    bar = page.locator("#status-bar").bounding_box()
    assert bar is not None and bar["y"] < 5, f"the status bar is not at the top: {bar}"
    screenshot(page, "phone-results-phone")
    wait_reranked(page)
    page.mouse.wheel(0, 3000)
    page.wait_for_timeout(200)
    bar = page.locator("#status-bar").bounding_box()
    assert bar is not None and -1 <= bar["y"] <= 1
    screenshot(page, "phone-scrolled-phone")

    edit = page.get_by_role("button", name="Edit search")
    expect()(edit).to_have_attribute("aria-expanded", "false")
    edit.click()
    expect()(page.locator("#search-form")).to_be_visible()
    expect()(edit).to_be_hidden()
    expect()(page.get_by_label("Text", exact=True)).to_be_focused()
    # "Use as reference" opens the form at the edit box.
    search_text(page, "orange circles")
    expect()(page.locator("#search-form")).to_be_hidden()
    page.locator("#results > li").first.get_by_role("button", name="Use as reference").click()
    expect()(page.get_by_label("Edit to apply")).to_be_focused()
    expect()(page.get_by_label("Edit to apply")).to_be_in_viewport()
    screenshot(page, "phone-use-as-reference-phone")
    page.set_viewport_size(DESKTOP)


def _check(page: Any, state: str, found: dict[str, list[dict[str, Any]]]) -> None:
    for size, suffix in ((DESKTOP, "desktop"), (PHONE, "phone")):
        page.set_viewport_size(size)
        page.wait_for_timeout(100)
        violations = axe_violations(page)
        if violations:
            found[f"{state} ({suffix})"] = violations
        screenshot(page, f"axe-{state}-{suffix}")
    page.set_viewport_size(DESKTOP)


def test_axe_finds_no_serious_violations_on_the_main_states(
    page: Any,
    live_server: LiveServer,
    served_catalog: ServedCatalog,
    server_factory: Callable[..., LiveServer],
) -> None:
    found: dict[str, list[dict[str, Any]]] = {}
    open_page(page, live_server, served_catalog)
    _check(page, "start", found)

    search_text(page, "striped triangles")
    expect()(page.locator("#rerank-progress")).to_be_visible()
    _check(page, "reranking", found)
    wait_reranked(page)
    page.locator("#trace-box summary").click()
    page.locator("#filters-box summary").click()
    _check(page, "results", found)

    page.locator("#results > li").first.get_by_role("button", name="Why this result?").click()
    expect()(page.get_by_role("dialog")).to_be_visible()
    _check(page, "why-dialog", found)
    page.keyboard.press("Escape")

    page.get_by_label("Reference image + edit").check()
    page.get_by_role("button", name="Choose from catalog…").click()
    expect()(page.locator("#catalog-grid li").first).to_be_visible()
    _check(page, "picker", found)
    page.keyboard.press("Escape")

    page.get_by_label("Text", exact=True).check()
    page.route("**/v1/search", lambda route: route.abort())
    search_text(page, "red circles")
    expect()(page.get_by_role("alert")).to_be_visible()
    _check(page, "error", found)
    page.unroute("**/v1/search")

    check_filters(page, *absent_pair(served_catalog))
    search_text(page, "red circles")
    expect()(page.locator("#empty-state")).to_be_visible()
    _check(page, "empty", found)
    assert found == {}, f"axe-core found serious or critical violations: {found}"
