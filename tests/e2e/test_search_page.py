"""The search page in headless Chromium against a live API over a drawn catalog.

Expected rankings are computed with the same engine in the test process (the
models are deterministic), so the page is checked against the method, not
against numbers written here.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imagescope.schemas import ComposedQuery, ImageRef, TextQuery
from tests.e2e.catalog import ServedCatalog
from tests.e2e.conftest import API_KEY, ARTIFACTS, LiveServer, screenshot
from tests.e2e.pages import (
    card_ids,
    expect,
    expected_moves,
    moved_markers,
    open_page,
    search_text,
    shots,
    wait_reranked,
    wait_thumbnails,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PAGE = 24


def test_text_search_shows_results_then_the_reranked_order(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    thumbnails: list[str] = []
    page.on("request", lambda r: thumbnails.append(r.url) if "/thumbnail" in r.url else None)
    open_page(page, live_server, served_catalog)
    query = "blue squares"
    want = served_catalog.expected(TextQuery(text=query))
    stage1 = [c.id for c in sorted(want.candidates, key=lambda c: c.stage1_rank)]

    search_text(page, query)
    expect()(page.locator("#status-rerank")).to_contain_text("Verifying the top 20")
    expect()(page.locator("#job-progress-label")).to_have_text("Verified 0 of 20")
    assert card_ids(page) == stage1[:PAGE]
    assert moved_markers(page) == {}
    first = page.locator("#results > li").first.locator("img")
    expect()(first).to_have_attribute("alt", served_catalog.items[stage1[0]].caption)
    wait_thumbnails(page)
    screenshot(page, "text-search-stage1")

    wait_reranked(page)
    assert card_ids(page) == [c.id for c in want.candidates][:PAGE]
    shown = set(card_ids(page))
    assert moved_markers(page) == {k: v for k, v in expected_moves(want).items() if k in shown}
    ranks = page.locator("#results .rank").evaluate_all("els => els.map(e => e.textContent)")
    assert ranks == [f"Rank #{i}" for i in range(1, PAGE + 1)]
    assert len(stage1) == 100
    # Lazy loading: the thumbnails far below the fold were not fetched.
    assert 0 < len(set(thumbnails)) < PAGE
    alts = page.locator("#results img").evaluate_all("els => els.map(e => e.alt)")
    assert all(alts), "every thumbnail has alt text"
    shots(page, "text-search-reranked")


def test_a_candidate_explains_its_verdicts_without_moving_the_grid(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    open_page(page, live_server, served_catalog)
    query = "dotted triangles"  # no other test asks it: the answer cache is cold
    want = served_catalog.expected(TextQuery(text=query))
    top = want.candidates[0]
    assert top.verdicts and top.evaluation is not None

    search_text(page, query)
    wait_reranked(page)
    boxes = """els => els.map(e => {
        const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height];
    })"""
    before = page.locator("#results > li").evaluate_all(boxes)
    card = page.locator(f'#results > li[data-id="{top.id}"]')
    card.get_by_role("button", name="Why this result?").focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Why #1")
    expect()(dialog).to_be_visible()
    assert page.locator("#results > li").evaluate_all(boxes) == before, "the grid moved"
    rows = dialog.locator("table.verdicts tbody tr")
    expect()(rows).to_have_count(len(top.verdicts))
    for i, verdict in enumerate(top.verdicts):
        cells = rows.nth(i).locator("td")
        expect()(cells.nth(0)).to_have_text(verdict.question)
        expect()(cells.nth(2)).to_contain_text("yes" if verdict.answer else "no")
        expect()(cells.nth(3)).to_contain_text("yes" if verdict.satisfied else "no")
        expect()(cells.nth(4)).to_have_text("yes" if verdict.cached else "no")
    verdict_word = "accepted" if top.evaluation.accepted else "rejected"
    expect()(dialog.locator(".evaluation")).to_have_text(
        f"Evaluator {verdict_word}: {top.evaluation.reason}"
    )
    expect()(dialog.locator(".reason")).to_have_text(f"Summary: {top.reason}")
    shots(page, "explanation-open")
    dialog.screenshot(path=str(ARTIFACTS / "explanation-dialog.png"))
    page.keyboard.press("Escape")
    expect()(dialog).to_be_hidden()
    page.locator("#trace-box summary").click()
    for question in (p.question for p in want.trace.propositions):
        expect()(page.locator("#trace-body")).to_contain_text(question)


def test_composed_query_with_an_upload_gets_reranked(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    open_page(page, live_server, served_catalog)
    reference = next(
        i for i, it in served_catalog.items.items() if it.attributes["colour"] != "blue"
    )
    upload = served_catalog.image_path(reference)
    instruction = "make it blue"
    data = base64.b64encode(upload.read_bytes()).decode()
    want = served_catalog.expected(
        ComposedQuery(reference=ImageRef(data=data), instruction=instruction)
    )
    assert expected_moves(want), "the scenario needs a rerank that moves something"

    page.get_by_label("Reference image + edit").check()
    page.get_by_label("…or upload an image").set_input_files(str(upload))
    expect()(page.locator("#reference-preview")).to_contain_text(f"Uploaded: {upload.name}")
    page.get_by_label("Edit to apply").fill(instruction)
    page.get_by_role("button", name="Search", exact=True).click()
    expect()(page.locator("#status-rerank")).to_contain_text("Verifying the top")
    expect()(page.locator("#rerank-progress")).to_be_visible()
    assert moved_markers(page) == {}

    wait_reranked(page)
    expect()(page.locator("#results .move.up").first).to_be_visible()
    assert card_ids(page) == [c.id for c in want.candidates][:PAGE]
    expect()(page.locator("#trace-body")).to_contain_text(want.trace.reference_caption or "")
    assert "ref_upload=" in page.url
    screenshot(page, "composed-upload-reranked")


def test_a_non_image_file_is_refused_before_upload(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog, tmp_path: Path
) -> None:
    searches: list[str] = []
    page.on("request", lambda r: searches.append(r.url) if "/v1/search" in r.url else None)
    open_page(page, live_server, served_catalog)
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not an image\n")
    fake = tmp_path / "photo.png"
    fake.write_text("not really a png\n")

    page.get_by_label("Reference image + edit").check()
    page.get_by_label("…or upload an image").set_input_files(str(notes))
    alert = page.get_by_role("alert")
    expect()(alert).to_contain_text("notes.txt is a text/plain file, not an image")
    expect()(alert).to_be_focused()
    expect()(page.locator("#reference-preview")).to_contain_text("No reference image yet")
    shots(page, "bad-upload-refused")
    page.get_by_label("…or upload an image").set_input_files(str(fake))
    expect()(alert).to_contain_text("photo.png is named like an image but cannot be read")
    page.get_by_label("Edit to apply").fill("make it red")
    page.get_by_role("button", name="Search", exact=True).click()
    expect()(alert).to_contain_text("Choose a reference image")
    assert searches == [], "nothing was sent to the server"


def test_a_failed_rerank_job_is_reported(
    page: Any, server_factory: Callable[..., LiveServer], served_catalog: ServedCatalog
) -> None:
    failing = server_factory(verify_fails=True)
    open_page(page, failing, served_catalog)
    search_text(page, "red circles")
    alert = page.get_by_role("alert")
    expect()(alert).to_contain_text("Reranking failed", timeout=20_000)
    expect()(alert).to_contain_text("the verifier server answered 500")
    expect()(alert.get_by_role("button", name="Retry")).to_be_visible()
    expect()(page.locator("#status-rerank")).to_have_text(
        "Reranking failed; showing the stage-1 order."
    )
    expect()(page.locator("#results > li")).to_have_count(PAGE)
    assert page.locator("#results .checks").first.inner_text().startswith("Not verified")
    screenshot(page, "job-failed-error")


def test_a_stopped_backend_is_reported(
    page: Any, server_factory: Callable[..., LiveServer], served_catalog: ServedCatalog
) -> None:
    doomed = server_factory()
    open_page(page, doomed, served_catalog)
    doomed.stop()
    search_text(page, "red circles")
    alert = page.get_by_role("alert")
    expect()(alert).to_contain_text("cannot be reached")
    expect()(alert.get_by_role("button", name="Retry")).to_be_visible()
    page.get_by_role("button", name="Dismiss").click()
    expect()(page.locator("#error-region")).to_be_empty()


def test_dialog_turns_and_filters_refine_the_search(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    open_page(page, live_server, served_catalog)
    page.get_by_label("Checking").select_option(label="Fast: similarity only (stage 1)")
    page.get_by_label("Dialog").check()
    page.get_by_label("Caption (first description)").fill("some circles")
    page.get_by_role("button", name="Search", exact=True).click()
    expect()(page.locator("#status-rerank")).to_have_text("Verification off.")
    expect()(page.locator("#results > li")).to_have_count(PAGE)

    page.get_by_label("Question").fill("what colour are they?")
    page.get_by_label("Answer").fill("red")
    page.get_by_label("Answer").press("Enter")
    expect()(page.locator("#turns-list li")).to_have_count(1)
    expect()(page.locator("#turns-list")).to_contain_text("A: red")
    expect()(page.locator("#trace-body")).to_contain_text("round 1:")
    expect()(page.get_by_label("Question")).to_be_focused()

    page.locator("#filters-box summary").click()
    filters = page.locator('fieldset[data-filter-field="colour"]')
    filters.get_by_label("red").check()
    expect()(page.locator("#filters-count")).to_have_text("1 on")
    page.get_by_role("button", name="Search", exact=True).click()
    reds = [i for i, it in served_catalog.items.items() if it.attributes["colour"] == "red"]
    expect()(page.locator("#results > li")).to_have_count(min(PAGE, len(reds)))
    assert set(card_ids(page)) <= set(reds)
    screenshot(page, "dialog-with-filter")


def test_picking_a_reference_from_the_catalog(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    open_page(page, live_server, served_catalog)
    page.get_by_label("Reference image + edit").check()
    page.get_by_role("button", name="Choose from catalog…").click()
    dialog = page.get_by_role("dialog", name="Choose a reference image")
    expect()(dialog).to_be_visible()
    expect()(dialog.locator("#catalog-grid li")).to_have_count(24)
    dialog.get_by_label("Find in catalog").fill("yellow stars")
    dialog.get_by_label("Find in catalog").press("Enter")
    expect()(dialog.locator("#catalog-status")).to_contain_text("images shown")
    screenshot(page, "catalog-picker")
    # One Escape closes the picker although its search box has text.
    page.keyboard.press("Escape")
    expect()(dialog).to_be_hidden()
    screenshot(page, "picker-closed-by-one-escape")
    page.get_by_role("button", name="Choose from catalog…").click()
    expect()(dialog).to_be_visible()
    first = dialog.locator("#catalog-grid button").first
    picked = first.locator("span").inner_text()
    first.click()
    expect()(dialog).to_be_hidden()
    expect()(page.locator("#reference-preview")).to_contain_text(picked)
    expect()(page.get_by_label("Edit to apply")).to_be_focused()
    page.keyboard.type("make them green")
    page.keyboard.press("Enter")
    expect()(page.locator("#status-stage1")).to_contain_text("results")
    expect()(page.locator("#results > li").first).to_be_visible()


def test_stopping_a_rerank_keeps_the_stage1_order(
    page: Any, server_factory: Callable[..., LiveServer], served_catalog: ServedCatalog
) -> None:
    slow = server_factory(verify_delay_s=3.0)
    open_page(page, slow, served_catalog)
    query = "green stars"
    stage1 = [c.id for c in served_catalog.engine.stage1(TextQuery(text=query)).candidates]

    search_text(page, query)
    stop = page.get_by_role("button", name="Stop reranking")
    expect()(stop).to_be_visible()
    stop.click()
    expect()(page.locator("#status-rerank")).to_have_text(
        "Reranking stopped; showing the stage-1 order.", timeout=20_000
    )
    expect()(stop).to_be_hidden()
    assert card_ids(page) == stage1[:PAGE]
    assert moved_markers(page) == {}


def test_the_page_is_keyboard_reachable_and_labelled(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    open_page(page, live_server, served_catalog)
    page.keyboard.press("Tab")
    expect()(page.get_by_role("link", name="Skip to results")).to_be_focused()
    page.keyboard.press("Tab")
    expect()(page.get_by_label("Text", exact=True)).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect()(page.get_by_label("Reference image + edit")).to_be_checked()
    expect()(page.locator("#kind-composed")).to_be_visible()
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "search-button":
            break
    else:
        pytest.fail("the Search button cannot be reached with Tab")

    page.locator("#filters-box summary").click()
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter(e => e.offsetParent !== null)
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                         && !(e.tagName === 'BUTTON' && e.textContent.trim()))
            .map(e => e.outerHTML)"""
    )
    assert unlabelled == []


def test_an_api_key_unlocks_the_page_and_its_thumbnails(
    page: Any, keyed_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    thumbnails: list[str] = []
    page.on("request", lambda r: thumbnails.append(r.url) if "/thumbnail" in r.url else None)
    page.goto(keyed_server.url)
    alert = page.get_by_role("alert")
    expect()(alert).to_contain_text("enter it under Connection")
    page.get_by_label("API key (if the server asks for one)").fill(API_KEY)
    alert.get_by_role("button", name="Retry").click()
    expect()(page.locator("#catalog-info")).to_contain_text(f"{len(served_catalog.items)} images")
    page.get_by_label("Checking").select_option("1")
    search_text(page, "red circles")
    expect()(page.locator("#results > li")).to_have_count(PAGE)
    wait_thumbnails(page)
    assert thumbnails and all("token=" in url for url in thumbnails)
