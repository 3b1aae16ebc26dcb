"""Helpers the browser tests share: opening the page, reading cards, sizes, axe-core."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imagescope.schemas import SearchResult
from tests.e2e.catalog import ServedCatalog
from tests.e2e.conftest import LiveServer, screenshot
from tests.fixtures.services import service_missing

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / ".cache" / "npm" / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
RERANKED = re.compile(r"Reranked in [\d.]+ m?s: \d+ of \d+ verified")


def expect() -> Callable[..., Any]:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def open_page(page: Any, live: LiveServer, served: ServedCatalog, query: str = "") -> None:
    page.goto(live.url + query)
    expect()(page.locator("#catalog-info")).to_contain_text(f"{len(served.items)} images")


def card_ids(page: Any) -> list[str]:
    ids: list[str] = page.locator("#results > li").evaluate_all("els => els.map(e => e.dataset.id)")
    return ids


def moved_markers(page: Any) -> dict[str, str]:
    """Candidate id -> text of its visible "moved" marker."""
    pairs: list[tuple[str, str]] = page.locator("#results > li").evaluate_all(
        """els => els.filter(e => !e.querySelector('.move').hidden)
                     .map(e => [e.dataset.id, e.querySelector('.move').textContent])"""
    )
    return dict(pairs)


def expected_moves(result: SearchResult) -> dict[str, str]:
    return {
        c.id: f"▲ moved up from #{c.stage1_rank}"
        if rank < c.stage1_rank
        else f"▼ moved down from #{c.stage1_rank}"
        for rank, c in enumerate(result.candidates, start=1)
        if rank != c.stage1_rank
    }


def search_text(page: Any, text: str) -> None:
    box = page.get_by_label("Describe the image you want")
    box.fill(text)
    box.press("Enter")


def wait_reranked(page: Any) -> None:
    expect()(page.locator("#status-rerank")).to_contain_text(RERANKED, timeout=20_000)


def wait_thumbnails(page: Any, n: int = 6) -> None:
    page.wait_for_function(
        f"() => [...document.querySelectorAll('#results img')].slice(0, {n})"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )


_SHOW_FOCUS = """() => {
    // What the user looks at: an error, a dialog or the reference inputs when
    // they hold the focus; otherwise the status bar over the results.
    const active = document.activeElement;
    const near = active && active.closest('[role=alert], dialog, #reference-drop');
    const results = document.querySelector('#results > li, #empty-state:not([hidden])');
    const target = near ? active : results ? document.querySelector('#status-bar') : active;
    if (!target || target === document.body) return;
    target.scrollIntoView({block: near ? 'center' : 'start'});
}"""


def shots(page: Any, name: str, *, full_page: bool = False) -> None:
    """Screenshots ``name-desktop.png`` and ``name-phone.png`` (focus in view at each size)."""
    for size, suffix in ((PHONE, "phone"), (DESKTOP, "desktop")):
        page.set_viewport_size(size)
        page.wait_for_timeout(150)
        page.evaluate(_SHOW_FOCUS)
        screenshot(page, f"{name}-{suffix}", full_page=full_page)


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not AXE.is_file():
        service_missing("axe-core", f"no {AXE} (run scripts/bootstrap.sh --services)")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations
              .filter(v => ['serious', 'critical'].includes(v.impact))
              .map(v => ({id: v.id, impact: v.impact, help: v.help,
                          nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
        }"""
    )
    return found


def absent_pair(served: ServedCatalog) -> tuple[str, str]:
    """A (category, colour) that no catalog image has: filters that match nothing."""
    attrs = [it.attributes for it in served.items.values()]
    seen = {(a["category"], a["colour"]) for a in attrs}
    categories = sorted({a["category"] for a in attrs})
    colours = sorted({a["colour"] for a in attrs})
    return next((k, c) for k in categories for c in colours if (k, c) not in seen)


def check_filters(page: Any, category: str, colour: str) -> None:
    """Opens the filters and ticks ``category`` and ``colour``."""
    if not page.locator("#filters-box").evaluate("e => e.open"):
        page.locator("#filters-box summary").click()
    field = 'fieldset[data-filter-field="{}"]'
    page.locator(field.format("category")).get_by_label(category, exact=True).check()
    page.locator(field.format("colour")).get_by_label(colour, exact=True).check()
