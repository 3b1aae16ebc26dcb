"""Results as a shopper reads them: pages and a count, export, the sticky status
bar, the trace's timings and costs, cards (rank, relevance, checks, metadata),
errors that replace stale results, and empty states that say what to try."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imagescope.schemas import TextQuery
from tests.e2e.catalog import ServedCatalog
from tests.e2e.conftest import LiveServer
from tests.e2e.pages import (
    absent_pair,
    card_ids,
    check_filters,
    expect,
    open_page,
    search_text,
    shots,
    wait_reranked,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PAGE = 24


def test_results_come_in_pages_with_a_count(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    open_page(page, live_server, served_catalog)
    page.get_by_label("Checking").select_option("1")
    search_text(page, "purple crosses")
    count = page.locator("#result-count")
    more = page.get_by_role("button", name="Show more results")
    expect()(count).to_have_text("Showing 24 of 100+")
    # The button (clicked where it is, without scrolling the list's end into view).
    more.dispatch_event("click")
    expect()(count).to_have_text("Showing 48 of 100+")
    # Scrolling to the end of the list loads the next page by itself.
    page.locator("#scroll-sentinel").scroll_into_view_if_needed()
    expect()(count).to_have_text("Showing 72 of 100+")
    page.evaluate("() => window.scrollTo(0, 0)")
    more.dispatch_event("click")
    expect()(count).to_have_text("Showing 96 of 100+")
    # Past the 100 fetched, stage 1 is asked for a longer list: the whole catalog.
    more.dispatch_event("click")
    total = len(served_catalog.items)
    expect()(count).to_have_text(f"Showing {total} of {total}")
    expect()(more).to_be_hidden()
    want = served_catalog.engine.stage1(TextQuery(text="purple crosses"), limit=200)
    assert card_ids(page) == [c.id for c in want.candidates]
    shots(page, "paging-count")


def test_results_export_as_json_with_the_trace(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    open_page(page, live_server, served_catalog)
    search_text(page, "striped triangles")
    wait_reranked(page)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download results (JSON)").click()
    saved = json.loads(open(download.value.path(), encoding="utf-8").read())
    want = served_catalog.expected(TextQuery(text="striped triangles"))
    assert download.value.suggested_filename.startswith("imagescope-results-")
    assert saved["query"]["text"] == "striped triangles"
    assert [c["id"] for c in saved["candidates"]] == [c.id for c in want.candidates]
    assert saved["stages"] == [1, 2, 3]
    assert saved["job"]["state"] == "succeeded"
    assert {p["question"] for p in saved["trace"]["propositions"]} == {
        p.question for p in want.trace.propositions
    }
    assert set(saved["trace"]["timings"]) >= {"retrieve", "verify", "evaluate"}
    assert "kind=text" in saved["url"]
    page.get_by_role("button", name="Download results (JSON)").focus()
    shots(page, "export-json")


def test_the_status_bar_stays_in_view_with_times_and_progress(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    open_page(page, live_server, served_catalog)
    search_text(page, "blue squares")
    label = page.locator("#job-progress-label")
    expect()(label).to_have_text("Verified 0 of 20")
    expect()(page.locator("#job-progress")).to_have_accessible_name("Verified 0 of 20")
    wait_reranked(page)
    bar = page.locator("#status-bar")
    expect()(bar).to_contain_text("Stage 1: 100 results in")
    expect()(page.locator("#status-rerank")).to_contain_text("20 of 20 verified")
    want = served_catalog.expected(TextQuery(text="blue squares"))
    accepted = sum(1 for c in want.candidates if c.evaluation and c.evaluation.accepted)
    expect()(page.locator("#status-accepted")).to_have_text(
        f"{accepted} accepted by the evaluator."
    )
    page.locator("#results > li").last.scroll_into_view_if_needed()
    box = bar.bounding_box()
    assert box is not None and -1 <= box["y"] <= 1, f"status bar not at the top: {box}"
    shots(page, "status-bar-sticky")

    page.evaluate("() => window.scrollTo(0, 0)")
    page.locator("#trace-box summary").click()
    timings = page.locator("table.timings")
    for stage in (
        "Finding candidates (stage 1)",
        "Checking candidates (stage 2)",
        "Final judgement (stage 3)",
    ):
        expect()(timings).to_contain_text(stage)
    costs = page.locator("table.costs tbody tr")
    expect()(costs).to_have_count(len(want.trace.costs))
    verifier = page.locator("table.costs tbody tr", has_text="verifier").locator("td")
    expect()(verifier.nth(1)).to_have_text(str(want.trace.costs["verifier"].calls))
    models = page.locator("dl.models")
    expect()(models).to_contain_text("Answers yes/no checks about each top picture")
    expect()(models).to_contain_text("built-in rules (no language model)")
    page.locator("#trace-box").scroll_into_view_if_needed()
    shots(page, "trace-timings-costs")


def test_cards_show_final_rank_relevance_checks_and_mentioned_fields(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    open_page(page, live_server, served_catalog)
    query = "striped triangles"
    search_text(page, query)
    expect()(page.locator("#results .checks").first).to_have_text(
        "Not verified yet: the top results are being checked."
    )
    wait_reranked(page)
    want = served_catalog.expected(TextQuery(text=query))
    cards = page.locator("#results > li").evaluate_all(
        """els => els.map(e => ({
            id: e.dataset.id, rank: e.querySelector('.rank').textContent,
            relevance: Number(e.querySelector('.relevance').dataset.value),
            checks: e.querySelector('.checks').textContent,
            meta: [...e.querySelectorAll('.meta li')].map(li => li.textContent)}))"""
    )
    for i, (card, cand) in enumerate(zip(cards, want.candidates, strict=False), start=1):
        assert card["id"] == cand.id and card["rank"] == f"Rank #{i}"
        assert 0 <= card["relevance"] <= 100
        assert "yet" not in card["checks"], "a finished job leaves no 'Not verified yet'"
        said = {"category": "triangle", "pattern": "striped"}
        mentioned = {k for k, v in said.items() if cand.metadata[k] == v}
        assert {m.split(":")[0] for m in card["meta"][: len(mentioned)]} == mentioned
        assert len(card["meta"]) == len(cand.metadata)
        if cand.verdicts:
            passed = sum(v.satisfied for v in cand.verdicts)
            assert card["relevance"] == round(100 * passed / len(cand.verdicts))
            assert card["checks"].startswith(f"{passed} of {len(cand.verdicts)} checks passed")
        else:
            assert card["checks"] == "Not verified: only the top results are checked."
    top = want.candidates[0]
    assert top.verdicts and all(v.satisfied for v in top.verdicts)
    assert (
        cards[0]["checks"] == f"{len(top.verdicts)} of {len(top.verdicts)} checks passed: "
        "striped, triangles"
    )
    shots(page, "cards-relevance-checks")


def test_a_failed_search_replaces_the_results_and_retry_works(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    open_page(page, live_server, served_catalog)
    page.get_by_label("Checking").select_option("1")
    search_text(page, "red circles")
    expect()(page.locator("#results > li")).to_have_count(PAGE)
    page.locator("#results > li").nth(20).scroll_into_view_if_needed()
    page.route("**/v1/search", lambda route: route.abort())
    search_text(page, "blue stars")
    alert = page.get_by_role("alert")
    expect()(alert).to_contain_text("cannot be reached")
    expect()(alert).to_be_focused()
    expect()(alert).to_be_in_viewport()
    expect()(page.locator("#results > li")).to_have_count(0)
    expect()(page.locator("#trace-box")).to_be_hidden()
    expect()(page.locator("#result-count")).to_be_empty()
    shots(page, "search-failed-retry")
    page.unroute("**/v1/search")
    alert.get_by_role("button", name="Retry").click()
    expect()(page.locator("#results > li")).to_have_count(PAGE)
    expect()(page.get_by_role("alert")).to_have_count(0)
    want = served_catalog.engine.stage1(TextQuery(text="blue stars"))
    assert card_ids(page)[0] == want.candidates[0].id


def test_filters_that_match_nothing_say_which_to_remove(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    attrs = [it.attributes for it in served_catalog.items.values()]
    category, colour = absent_pair(served_catalog)
    open_page(page, live_server, served_catalog)
    page.get_by_label("Checking").select_option("1")
    check_filters(page, category, colour)
    search_text(page, f"{colour} {category}s")
    empty = page.locator("#empty-state")
    expect()(empty).to_contain_text("No image matches this query with the filters set.")
    expect()(page.locator("#status-stage1")).to_contain_text("No results")
    shots(page, "empty-filters")
    empty.get_by_role("button", name=f"Remove “colour = {colour}”").click()
    expect()(empty).to_be_hidden()
    count = sum(1 for a in attrs if a["category"] == category)
    expect()(page.locator("#results > li")).to_have_count(min(PAGE, count))
    assert "f.colour" not in page.url


def test_an_empty_catalog_says_to_ingest(page: Any, empty_server: LiveServer) -> None:
    page.goto(empty_server.url)
    expect()(page.locator("#catalog-info")).to_contain_text("0 images")
    search_text(page, "red dress")
    empty = page.locator("#empty-state")
    expect()(empty).to_contain_text("The catalog has no images yet.")
    expect()(empty).to_contain_text("imagescope ingest ./photos")
    expect()(page.locator("#results > li")).to_have_count(0)
    expect()(page.locator("#status-rerank")).not_to_contain_text("Reranked")
    shots(page, "empty-catalog")


def test_an_unavailable_rerank_keeps_stage1_and_says_so(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    def no_jobs(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        body["job"] = None
        body["rerank"] = {"state": "unavailable", "detail": "the job queue is down"}
        route.fulfill(response=response, json=body)

    open_page(page, live_server, served_catalog)
    page.route("**/v1/search", no_jobs)
    search_text(page, "red circles")
    expect()(page.locator("#results > li")).to_have_count(PAGE)
    expect()(page.locator("#status-rerank")).to_have_text(
        "Verification is unavailable right now; showing the stage-1 order."
    )
    alert = page.get_by_role("alert")
    expect()(alert).to_contain_text("Reranking is unavailable: the job queue is down")
    expect()(alert.get_by_role("button", name="Retry")).to_be_visible()
    expect()(page.locator("#rerank-progress")).to_be_hidden()
    page.unroute("**/v1/search")
