"""The search in the URL (reload, shared links, back/forward), the actions on a
result, and every way to give a reference image (URL, drop, paste)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from imagescope.schemas import ComposedQuery, DialogQuery, DialogTurn, ImageRef, TextQuery
from tests.e2e.catalog import ServedCatalog
from tests.e2e.conftest import LiveServer
from tests.e2e.pages import card_ids, expect, open_page, search_text, shots, wait_reranked

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PAGE = 24


def url_params(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def stage1_ids(served: ServedCatalog, query: Any) -> list[str]:
    return [c.id for c in served.engine.stage1(query).candidates][:PAGE]


def test_reload_and_back_forward_restore_searches(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    open_page(page, live_server, served_catalog)
    page.get_by_label("Checking").select_option("1")
    search_text(page, "red circles")
    expect()(page.locator("#status-stage1")).to_contain_text("Stage 1: 100 results")
    assert url_params(page) == {"kind": ["text"], "q": ["red circles"], "stages": ["1"]}
    first = stage1_ids(served_catalog, TextQuery(text="red circles"))
    assert card_ids(page) == first

    search_text(page, "yellow stars")
    expect()(page.locator("#results > li").first).to_have_attribute(
        "data-id", stage1_ids(served_catalog, TextQuery(text="yellow stars"))[0]
    )
    page.reload()
    expect()(page.get_by_label("Describe the image you want")).to_have_value("yellow stars")
    expect()(page.locator("#status-stage1")).to_contain_text("Stage 1: 100 results")
    assert card_ids(page) == stage1_ids(served_catalog, TextQuery(text="yellow stars"))

    page.go_back()
    expect()(page.get_by_label("Describe the image you want")).to_have_value("red circles")
    expect()(page.locator("#results > li").first).to_have_attribute("data-id", first[0])
    assert card_ids(page) == first
    shots(page, "url-restored-after-back")
    page.go_forward()
    expect()(page.get_by_label("Describe the image you want")).to_have_value("yellow stars")


def test_a_shared_link_restores_reference_edit_filters_and_stages(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    ref = "syn-00010"
    colour = served_catalog.items[ref].attributes["colour"]
    link = f"?kind=composed&ref={ref}&edit=make+it+striped&f.colour={colour}&stages=1%2C2"
    open_page(page, live_server, served_catalog, link)
    expect()(page.get_by_label("Reference image + edit")).to_be_checked()
    expect()(page.locator("#reference-preview")).to_contain_text(f"Catalog image {ref}")
    expect()(page.get_by_label("Edit to apply")).to_have_value("make it striped")
    expect()(page.get_by_label("Checking")).to_have_value("1,2")
    page.locator("#filters-box summary").click()
    box = page.locator('fieldset[data-filter-field="colour"]')
    expect()(box.get_by_label(colour, exact=True)).to_be_checked()
    wait_reranked(page)
    want = served_catalog.expected(
        ComposedQuery(
            reference=ImageRef(id=ref), instruction="make it striped", filters={"colour": colour}
        )
    )
    assert set(card_ids(page)) <= {c.id for c in want.candidates}
    expect()(page.locator("#status-accepted")).to_be_empty()  # stage 3 was not asked for
    shots(page, "shared-link-composed")


def test_a_dialog_link_restores_its_turns(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    link = "?kind=dialog&caption=some+circles&tq=what+colour%3F&ta=red&stages=1"
    open_page(page, live_server, served_catalog, link)
    expect()(page.locator("#turns-list li")).to_have_count(1)
    expect()(page.locator("#turns-list")).to_contain_text("Q: what colour? — A: red")
    query = DialogQuery(
        caption="some circles", turns=[DialogTurn(question="what colour?", answer="red")]
    )
    expect()(page.locator("#results > li").first).to_have_attribute(
        "data-id", stage1_ids(served_catalog, query)[0]
    )
    assert card_ids(page) == stage1_ids(served_catalog, query)


def test_a_link_to_an_uploaded_reference_asks_for_the_file(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    open_page(page, live_server, served_catalog, "?kind=composed&ref_upload=dress.jpg&edit=red")
    alert = page.get_by_role("alert")
    expect()(alert).to_contain_text("uploaded file (dress.jpg)")
    expect()(alert).to_contain_text("Upload it again")
    expect()(page.get_by_label("Edit to apply")).to_have_value("red")


def test_result_actions_search_from_a_result(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    open_page(page, live_server, served_catalog)
    page.get_by_label("Checking").select_option("1")
    search_text(page, "green squares")
    expect()(page.locator("#results > li")).to_have_count(PAGE)
    card = page.locator("#results > li").nth(2)
    target = card.get_attribute("data-id")
    assert target is not None
    caption = served_catalog.items[target].caption

    card.get_by_role("button", name="Search with this caption").click()
    expect()(page.get_by_label("Describe the image you want")).to_have_value(caption)
    assert url_params(page)["q"] == [caption]
    expect()(page.locator("#results > li").first).to_have_attribute(
        "data-id", stage1_ids(served_catalog, TextQuery(text=caption))[0]
    )

    card = page.locator(f'#results > li[data-id="{target}"]')
    card.get_by_role("button", name="More like this").click()
    expect()(page.get_by_label("Reference image + edit")).to_be_checked()
    expect()(page.locator("#reference-preview")).to_contain_text(f"Catalog image {target}")
    assert url_params(page)["ref"] == [target]
    more = ComposedQuery(reference=ImageRef(id=target), instruction="more like this")
    expect()(page.locator("#results > li").first).to_have_attribute(
        "data-id", stage1_ids(served_catalog, more)[0]
    )
    shots(page, "more-like-this")

    other = page.locator("#results > li").nth(1)
    other_id = other.get_attribute("data-id")
    other.get_by_role("button", name="Use as reference").click()
    expect()(page.locator("#reference-preview")).to_contain_text(f"Catalog image {other_id}")
    expect()(page.get_by_label("Edit to apply")).to_have_value("")
    expect()(page.get_by_label("Edit to apply")).to_be_focused()


def test_reference_by_image_url_goes_through_the_server(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog, image_host: str
) -> None:
    previews: list[str] = []
    page.on("request", lambda r: previews.append(r.url) if "/reference/preview" in r.url else None)
    open_page(page, live_server, served_catalog)
    page.get_by_label("Reference image + edit").check()
    url_box = page.get_by_label("…or an image URL")
    url_box.fill(image_host + "nothing-here.png")
    page.get_by_role("button", name="Use URL").click()
    alert = page.get_by_role("alert")
    expect()(alert).to_contain_text("That image URL cannot be used")
    expect()(alert).to_contain_text("answered HTTP 404")

    ref = "syn-00020"
    image_url = image_host + f"images/{ref}.png"
    url_box.fill(image_url)
    url_box.press("Enter")
    expect()(page.locator("#reference-preview")).to_contain_text(f"From URL: {image_url}")
    expect()(page.locator("#reference-preview img")).to_have_js_property("complete", True)
    assert previews and all(p.startswith(page.url.split("?")[0]) for p in previews)
    page.get_by_label("Edit to apply").fill("make it blue")
    page.get_by_label("Edit to apply").press("Enter")
    wait_reranked(page)
    assert url_params(page)["ref_url"] == [image_url]
    want = served_catalog.expected(
        ComposedQuery(reference=ImageRef(url=image_url), instruction="make it blue")
    )
    assert card_ids(page) == [c.id for c in want.candidates][:PAGE]
    shots(page, "reference-by-url")
    page.reload()
    expect()(page.locator("#reference-preview")).to_contain_text(f"From URL: {image_url}")
    wait_reranked(page)


DROP = """([b64, name, type, kind]) => {
    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], name, {type}));
    const target = document.querySelector(kind === 'drop' ? '#results' : 'body');
    const event = kind === 'drop'
        ? new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true})
        : new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true});
    target.dispatchEvent(event);
}"""


def test_a_dropped_or_pasted_image_becomes_the_reference(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    open_page(page, live_server, served_catalog)
    image = base64.b64encode(served_catalog.image_path("syn-00030").read_bytes()).decode()
    text = base64.b64encode(b"hello").decode()

    page.evaluate(DROP, [text, "notes.txt", "text/plain", "drop"])
    expect()(page.get_by_role("alert")).to_contain_text("notes.txt is a text/plain file")
    page.evaluate(DROP, [image, "dropped.png", "image/png", "drop"])
    expect()(page.get_by_label("Reference image + edit")).to_be_checked()
    expect()(page.locator("#reference-preview")).to_contain_text("Uploaded: dropped.png")
    expect()(page.get_by_role("alert")).to_have_count(0)

    page.evaluate(DROP, [image, "pasted.png", "image/png", "paste"])
    expect()(page.locator("#reference-preview")).to_contain_text("Uploaded: pasted.png")
    page.get_by_label("Edit to apply").fill("make it red")
    page.get_by_label("Edit to apply").press("Enter")
    expect()(page.locator("#status-stage1")).to_contain_text("Stage 1: 100 results")
    want = served_catalog.engine.stage1(
        ComposedQuery(reference=ImageRef(data=image), instruction="make it red")
    )
    expect()(page.locator("#results > li").first).to_have_attribute(
        "data-id", want.candidates[0].id
    )
    shots(page, "reference-pasted")


def test_a_link_with_an_unknown_filter_says_it_was_left_out(
    page: Any, live_server: LiveServer, served_catalog: ServedCatalog
) -> None:
    open_page(page, live_server, served_catalog, "?kind=text&q=red+circles&f.size=XL&stages=1")
    expect()(page.get_by_role("alert")).to_contain_text("This catalog has no field size")
    expect()(page.locator("#results > li")).to_have_count(PAGE)
    assert card_ids(page) == stage1_ids(served_catalog, TextQuery(text="red circles"))
