/*
 * ImageScope search page: plain JavaScript modules, no build step, no
 * third-party code. Relative URLs, so the page also works behind a path prefix.
 *
 * This module holds the form: query kinds, dialog turns, the search in the URL
 * (urlstate.js; reload, links and back/forward restore searches), errors and
 * empty states, the phone layout, and the actions on a result card.
 * search.js runs searches and draws results; reference.js takes reference
 * images; filters.js, picker.js, cards.js and trace.js draw their parts.
 */
import { api, refreshImageToken } from "./api.js";
import { $, button, el } from "./dom.js";
import { clearError, emptyState, setRetry, showError } from "./feedback.js";
import {
  applyFilterParams,
  clearFilters,
  filterControl,
  filterParams,
  removeFilter,
  selectedFilters,
} from "./filters.js";
import { initPicker } from "./picker.js";
import {
  initReference,
  referenceForQuery,
  referenceForUrl,
  setLimits,
  setReference,
  takeUrl,
} from "./reference.js";
import { clearResults, initSearch, search, setPageOptions } from "./search.js";
import { fromParams, sameSearch, toParams } from "./urlstate.js";

const NARROW = window.matchMedia("(max-width: 48rem)");

const page = {
  kind: "text",
  turns: [],
  catalogCount: null,
};

// ------------------------------------------------------------------ the query

class QueryProblem extends Error {}

function stages() {
  return $("#stages-input").value.split(",").map(Number);
}

function buildQuery() {
  const filters = selectedFilters();
  if (page.kind === "text") {
    const text = $("#text-input").value.trim();
    if (!text) throw new QueryProblem("Type what you are looking for, then search.");
    return { kind: "text", text, filters };
  }
  if (page.kind === "composed") {
    const reference = referenceForQuery();
    if (!reference) {
      throw new QueryProblem("Choose a reference image: from the catalog, a file, a URL, or drop one.");
    }
    const instruction = $("#instruction-input").value.trim();
    if (!instruction) throw new QueryProblem("Say how the result should differ from the reference image.");
    return { kind: "composed", reference, instruction, filters };
  }
  const caption = $("#caption-input").value.trim();
  if (!caption) throw new QueryProblem("Write a first caption for the dialog.");
  return { kind: "dialog", caption, turns: page.turns.map((t) => ({ ...t })), filters };
}

/** The form as a URL state (see urlstate.js). */
function formState() {
  return {
    kind: page.kind,
    text: $("#text-input").value.trim(),
    ref: referenceForUrl(),
    edit: $("#instruction-input").value.trim(),
    caption: $("#caption-input").value.trim(),
    turns: page.turns.map((t) => ({ ...t })),
    filters: filterParams(),
    stages: stages(),
  };
}

function summaryOf(query) {
  if (query.kind === "text") return `Text: ${query.text}`;
  if (query.kind === "composed") return `Reference + edit: ${query.instruction}`;
  return `Dialog: ${query.caption}${query.turns.length ? ` (+${query.turns.length} turns)` : ""}`;
}

// ------------------------------------------------------------------ searching

async function runQuery(query, runStages) {
  setRetry(() => runQuery(query, runStages));
  const ok = await search(query, runStages);
  if (NARROW.matches) collapseForm(summaryOf(query), ok);
}

/** Searches with the form; records the search in the URL (a new history entry). */
function submit() {
  clearError();
  let query;
  try {
    query = buildQuery();
  } catch (err) {
    showError(err.message, { where: "form" });
    return;
  }
  const params = toParams(formState());
  const current = new URLSearchParams(window.location.search);
  if (!sameSearch(params, current)) history.pushState(null, "", `?${params}`);
  runQuery(query, stages());
}

/** Restores the search in the URL (reload, a shared link, back/forward). */
async function restoreFromUrl() {
  const state = fromParams(new URLSearchParams(window.location.search));
  if (!state) {
    clearResults();
    $("#status-stage1").textContent = "Type a query to search.";
    return;
  }
  setKind(state.kind);
  $("#text-input").value = state.text;
  $("#instruction-input").value = state.edit;
  $("#caption-input").value = state.caption;
  page.turns = state.turns;
  renderTurns();
  $("#stages-input").value = state.stages.join(",");
  const unknown = applyFilterParams(state.filters);
  updateFilterCount();
  if (state.kind === "composed" && !(await restoreReference(state.ref))) return;
  let query;
  try {
    query = buildQuery();
  } catch (err) {
    showError(err.message, { where: "form" });
    return;
  }
  await runQuery(query, state.stages);
  if (unknown.length) {
    showError(`This catalog has no field ${unknown.join(", ")}: the link's filter on it was left out.`);
  }
}

async function restoreReference(ref) {
  if (ref && ref.id) {
    setReference({ id: ref.id, caption: "" });
    return true;
  }
  setReference(null);
  if (ref && ref.url) return takeUrl(ref.url);
  const name = ref && ref.upload ? `(${ref.upload}) ` : "";
  showError(`The reference image was an uploaded file ${name}and cannot travel in a link. Upload it again, then search.`, {
    where: "reference",
  });
  return false;
}

// ------------------------------------------------------------------ phone layout

function collapseForm(summary, scroll) {
  $("#query-summary-text").textContent = summary;
  $("#query-summary").hidden = false;
  $("#search-form").hidden = true;
  $("#query-heading").hidden = true;
  $("#edit-search").setAttribute("aria-expanded", "false");
  if (scroll) $("#status-bar").scrollIntoView({ block: "start" });
}

function expandForm() {
  $("#query-summary").hidden = true;
  $("#search-form").hidden = false;
  $("#query-heading").hidden = false;
  $("#edit-search").setAttribute("aria-expanded", "true");
}

// ------------------------------------------------------------------ card actions

function focusEdit() {
  expandForm();
  const input = $("#instruction-input");
  input.scrollIntoView({ block: "center" });
  input.focus();
}

const cardActions = {
  more(candidate) {
    setKind("composed");
    setReference({ id: candidate.id, caption: candidate.caption });
    $("#instruction-input").value = "more like this";
    submit();
  },
  caption(candidate) {
    setKind("text");
    $("#text-input").value = candidate.caption || candidate.id;
    submit();
  },
  reference(candidate) {
    setKind("composed");
    setReference({ id: candidate.id, caption: candidate.caption });
    $("#instruction-input").value = "";
    focusEdit();
  },
};

// ------------------------------------------------------------------ kinds, turns, filters

function setKind(kind) {
  page.kind = kind;
  for (const panel of document.querySelectorAll(".kind-panel")) panel.hidden = panel.dataset.kind !== kind;
  const radio = $(`input[name=kind][value=${kind}]`);
  if (!radio.checked) radio.checked = true;
}

function renderTurns() {
  $("#turns-list").replaceChildren(
    ...page.turns.map((turn, i) => {
      const item = el("li");
      item.append(el("span", `Q: ${turn.question} — A: ${turn.answer}`));
      const remove = button("Remove", undefined, `Remove turn ${i + 1}`);
      remove.addEventListener("click", () => {
        page.turns.splice(i, 1);
        renderTurns();
        submit();
      });
      item.append(remove);
      return item;
    }),
  );
  $("#turns-empty").hidden = page.turns.length > 0;
}

function addTurn() {
  const question = $("#question-input").value.trim();
  const answer = $("#answer-input").value.trim();
  if (!$("#caption-input").value.trim()) {
    showError("Write the dialog's first caption before adding turns.", { where: "form" });
    $("#caption-input").focus();
    return;
  }
  if (!answer) {
    showError("A turn needs an answer (and usually a question).", { where: "form" });
    $("#answer-input").focus();
    return;
  }
  page.turns.push({ question, answer });
  $("#question-input").value = "";
  $("#answer-input").value = "";
  renderTurns();
  $("#question-input").focus();
  submit();
}

function updateFilterCount() {
  const n = Object.keys(selectedFilters()).length;
  const badge = $("#filters-count");
  badge.hidden = n === 0;
  badge.textContent = n ? `${n} on` : "";
}

async function loadCatalogInfo() {
  const holder = $("#filters-fields");
  setRetry(() => start());
  try {
    const info = await api("v1/catalog/fields");
    const fields = info.fields || [];
    page.catalogCount = typeof info.count === "number" ? info.count : null;
    const count = page.catalogCount === null ? "catalog ready" : `${page.catalogCount} images`;
    $("#catalog-info").textContent = `${count} · ${fields.length} filterable fields`;
    holder.replaceChildren(
      ...(fields.length ? fields.map(filterControl) : [el("p", "This catalog has no metadata to filter on.", "muted")]),
    );
    return true;
  } catch (err) {
    $("#catalog-info").textContent = "Catalog unavailable";
    holder.replaceChildren(el("p", "Filters are unavailable.", "muted"));
    if ([401, 403].includes(err.status)) $("details.settings").open = true;
    showError(err.message, { retry: true });
    return false;
  }
}

async function loadOptions() {
  try {
    const options = await api("v1/page-options");
    setLimits(options);
    setPageOptions(options);
  } catch {
    setLimits(null); // an older server: the page's defaults
  }
}

// ------------------------------------------------------------------ wiring

function wire() {
  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  $("#text-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      submit();
    }
  });
  for (const radio of document.querySelectorAll("input[name=kind]")) {
    radio.addEventListener("change", () => setKind(radio.value));
  }
  $("#add-turn").addEventListener("click", addTurn);
  for (const input of [$("#question-input"), $("#answer-input")]) {
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        addTurn();
      }
    });
  }
  $("#reset-dialog").addEventListener("click", () => {
    page.turns = [];
    renderTurns();
    $("#caption-input").focus();
  });
  $("#filters-fields").addEventListener("change", updateFilterCount);
  $("#filters-fields").addEventListener("input", updateFilterCount);
  $("#clear-filters").addEventListener("click", () => {
    clearFilters();
    updateFilterCount();
  });
  $("#edit-search").addEventListener("click", () => {
    expandForm();
    $("input[name=kind]:checked").focus();
  });
  window.addEventListener("popstate", () => restoreFromUrl());
  $("#api-key-input").addEventListener("change", () => refreshImageToken());
  const errorHooks = { error: showError, clearError };
  initReference({
    changed: () => {},
    error: (message) => showError(message, { where: "reference" }),
    clearError,
    beforeTake: () => {
      setKind("composed");
      expandForm();
    },
  });
  initPicker({
    pick: (ref) => {
      setReference(ref);
      focusEdit();
    },
    error: (err) => showError(err.message),
  });
  const removeAndSearch = (name) => {
    removeFilter(name);
    updateFilterCount();
    submit();
  };
  initSearch({
    ...errorHooks,
    actions: cardActions,
    empty: (query) => emptyState(query, { catalogCount: page.catalogCount, removeFilter: removeAndSearch }),
  });
}

async function start() {
  clearError();
  const [ok] = await Promise.all([loadCatalogInfo(), loadOptions()]);
  if (ok) await restoreFromUrl();
}

wire();
setKind($("input[name=kind]:checked").value);
renderTurns();
start();
