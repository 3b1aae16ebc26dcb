/* The catalog picker: a dialog to choose a reference image from the catalog. */
import { api, refreshImageToken, setThumb } from "./api.js";
import { $, el } from "./dom.js";

const PAGE = 24;
const picker = { q: "", offset: 0 };
let onPick = () => {};
let onError = () => {};

function item(image) {
  const li = el("li");
  const pick = el("button", undefined, "pick");
  pick.type = "button";
  const img = document.createElement("img");
  img.loading = "lazy";
  img.decoding = "async";
  img.width = 160;
  img.height = 160;
  setThumb(img, image.id, "");
  pick.append(img, el("span", image.caption || image.id));
  pick.addEventListener("click", () => {
    $("#catalog-dialog").close();
    onPick({ id: image.id, caption: image.caption });
  });
  li.append(pick);
  return li;
}

async function loadPage(reset) {
  const grid = $("#catalog-grid");
  if (reset) {
    picker.offset = 0;
    grid.replaceChildren();
  }
  const params = new URLSearchParams({ limit: String(PAGE), offset: String(picker.offset) });
  if (picker.q) params.set("q", picker.q);
  $("#catalog-status").textContent = "Loading…";
  try {
    await refreshImageToken();
    const page = await api(`v1/catalog/images?${params}`);
    for (const image of page.items) grid.append(item(image));
    picker.offset += page.items.length;
    $("#catalog-more").hidden = page.next_offset === null || page.next_offset === undefined;
    $("#catalog-status").textContent = grid.children.length
      ? `${grid.children.length} images shown; choose one.`
      : "No image matches.";
  } catch (err) {
    $("#catalog-status").textContent = "The catalog could not be listed.";
    onError(err);
  }
}

export function openPicker() {
  $("#catalog-dialog").showModal();
  $("#catalog-search").focus();
  if (!$("#catalog-grid").children.length) loadPage(true);
}

export function initPicker({ pick, error }) {
  onPick = pick;
  onError = error;
  const dialog = $("#catalog-dialog");
  $("#pick-reference").addEventListener("click", openPicker);
  $("#catalog-search-button").addEventListener("click", () => {
    picker.q = $("#catalog-search").value.trim();
    loadPage(true);
  });
  $("#catalog-search").addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      $("#catalog-search-button").click();
    }
  });
  $("#catalog-more").addEventListener("click", () => loadPage(false));
  // One Escape closes the dialog, even when its search box has text (a search
  // box would otherwise spend the first press on clearing itself).
  dialog.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      dialog.close();
    }
  });
}
