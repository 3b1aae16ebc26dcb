/*
 * ImageScope search page: plain JavaScript, no build step, no third-party code.
 *
 * Talks to the HTTP API next to it (relative URLs, so the page also works
 * behind a path prefix):
 *   POST   v1/search                  stage 1 now; with mode=async also a rerank job id
 *   GET    v1/rerank-jobs/{id}        polled until the job is final
 *   DELETE v1/rerank-jobs/{id}        "Stop reranking"
 *   GET    v1/images/{id}/thumbnail   thumbnails (?size=)
 *   GET    v1/catalog/fields          filterable metadata fields, with sampled values
 *   GET    v1/catalog/images          the reference-image picker (?q=&limit=&offset=)
 *
 * Result cards are keyed by candidate id and reused when the reranked order
 * arrives, so thumbnails are not fetched twice and open explanations stay open.
 */
"use strict";

(() => {
  const THUMB_SIZES = [160, 320];
  const PICKER_PAGE = 24;
  const POLL_FIRST_MS = 300;
  const POLL_MAX_MS = 2000;
  const POLL_NETWORK_RETRIES = 5;
  const MAX_UPLOAD_BYTES = 25 * 1024 * 1024;
  const MAX_CHECKBOX_VALUES = 24;

  const $ = (selector, root = document) => root.querySelector(selector);

  const state = {
    kind: "text",
    reference: null, // {id, caption} from the catalog or {data, name, previewUrl} uploaded
    turns: [], // [{question, answer}]
    fields: [],
    cards: new Map(), // candidate id -> <li>
    generation: 0, // bumped by each search; stale responses are dropped
    controller: null,
    jobId: null,
    picker: { q: "", offset: 0 },
  };

  // ------------------------------------------------------------------ HTTP

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  function apiHeaders(hasBody) {
    const headers = { Accept: "application/json" };
    if (hasBody) headers["Content-Type"] = "application/json";
    const key = $("#api-key-input").value.trim();
    if (key) headers["X-API-Key"] = key;
    return headers;
  }

  async function api(path, { method = "GET", body, signal } = {}) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: apiHeaders(body !== undefined),
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(
        "The search server cannot be reached. Check that `imagescope serve` is running, then retry.",
        0,
      );
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) throw new ApiError(describeError(response.status, data, text), response.status);
    return data;
  }

  function reasonOf(data, text) {
    if (data && typeof data === "object") {
      const detail = data.detail ?? data.reason ?? data.message ?? data.error;
      if (typeof detail === "string") return detail;
      if (Array.isArray(detail)) {
        return detail
          .map((d) => {
            const where = Array.isArray(d.loc) ? d.loc.filter((p) => p !== "body").join(".") : "";
            return where ? `${where}: ${d.msg}` : String(d.msg ?? d);
          })
          .join("; ");
      }
      if (detail && typeof detail === "object") return reasonOf(detail, "");
    }
    return (text || "").trim().slice(0, 300) || "no reason given";
  }

  function describeError(status, data, text) {
    const reason = reasonOf(data, text);
    if (status === 401 || status === 403) {
      return `Not allowed: ${reason}. If the server needs an API key, enter it under Connection.`;
    }
    if (status === 413) return `Too large: ${reason}`;
    if (status >= 500) return `The server could not answer (HTTP ${status}): ${reason}`;
    return `The request was refused (HTTP ${status}): ${reason}`;
  }

  const thumbUrl = (id, size) =>
    `v1/images/${encodeURIComponent(id)}/thumbnail?size=${size}`;
  const imageUrl = (id) => `v1/images/${encodeURIComponent(id)}`;

  function setThumb(img, id, caption) {
    img.src = thumbUrl(id, THUMB_SIZES[0]);
    img.srcset = THUMB_SIZES.map((s) => `${thumbUrl(id, s)} ${s}w`).join(", ");
    img.sizes = "(max-width: 40rem) 45vw, 10rem";
    img.alt = caption || `catalog image ${id}`;
  }

  // ------------------------------------------------------------------ messages

  function showError(message) {
    const region = $("#error-region");
    const text = document.createElement("p");
    text.textContent = message;
    const dismiss = document.createElement("button");
    dismiss.type = "button";
    dismiss.textContent = "Dismiss";
    dismiss.addEventListener("click", clearError);
    region.replaceChildren(text, dismiss);
    region.classList.add("visible");
  }

  function clearError() {
    const region = $("#error-region");
    region.replaceChildren();
    region.classList.remove("visible");
  }

  function setStatus(message) {
    $("#status").textContent = message;
  }

  function fail(err) {
    if (err && err.name === "AbortError") return;
    showError(err instanceof Error ? err.message : String(err));
  }

  // ------------------------------------------------------------------ query building

  class QueryProblem extends Error {}

  function selectedFilters() {
    const filters = {};
    for (const control of document.querySelectorAll("[data-filter-field]")) {
      const name = control.dataset.filterField;
      const kind = control.dataset.filterKind;
      if (kind === "values") {
        const picked = [...control.querySelectorAll("input:checked")].map((i) =>
          JSON.parse(i.dataset.value),
        );
        if (picked.length === 1) filters[name] = picked[0];
        else if (picked.length > 1) filters[name] = picked;
      } else if (kind === "range") {
        const range = {};
        const low = $("input[data-bound=gte]", control).value;
        const high = $("input[data-bound=lte]", control).value;
        if (low !== "") range.gte = Number(low);
        if (high !== "") range.lte = Number(high);
        if (Object.keys(range).length) filters[name] = range;
      } else if (kind === "boolean") {
        const value = $("select", control).value;
        if (value !== "") filters[name] = value === "true";
      } else {
        const value = $("input", control).value.trim();
        if (value !== "") filters[name] = value;
      }
    }
    return filters;
  }

  function buildQuery() {
    const filters = selectedFilters();
    if (state.kind === "text") {
      const text = $("#text-input").value.trim();
      if (!text) throw new QueryProblem("Type what you are looking for, then search.");
      return { kind: "text", text, filters };
    }
    if (state.kind === "composed") {
      if (!state.reference) {
        throw new QueryProblem("Choose a reference image from the catalog or upload one.");
      }
      const instruction = $("#instruction-input").value.trim();
      if (!instruction) {
        throw new QueryProblem("Say how the result should differ from the reference image.");
      }
      const reference = state.reference.id
        ? { id: state.reference.id }
        : { data: state.reference.data };
      return { kind: "composed", reference, instruction, filters };
    }
    const caption = $("#caption-input").value.trim();
    if (!caption) throw new QueryProblem("Write a first caption for the dialog.");
    return { kind: "dialog", caption, turns: state.turns.map((t) => ({ ...t })), filters };
  }

  // ------------------------------------------------------------------ search and jobs

  function setBusy(busy) {
    $("#search-button").disabled = busy;
    $("#search-form").setAttribute("aria-busy", String(busy));
  }

  function stopJob() {
    if (state.controller) state.controller.abort();
    state.controller = null;
    state.jobId = null;
    $("#cancel-job").hidden = true;
    $("#job-progress").hidden = true;
  }

  async function runSearch() {
    clearError();
    let query;
    try {
      query = buildQuery();
    } catch (err) {
      fail(err);
      return;
    }
    if (state.jobId) {
      // The previous query's rerank is no longer wanted: free the workers.
      api(`v1/rerank-jobs/${encodeURIComponent(state.jobId)}`, { method: "DELETE" }).catch(
        () => {},
      );
    }
    stopJob();
    const generation = ++state.generation;
    const controller = new AbortController();
    state.controller = controller;
    const rerank = $("#rerank-input").checked;
    const limit = Math.max(1, Math.min(500, Number($("#limit-input").value) || 100));
    setBusy(true);
    setStatus("Searching…");
    try {
      const started = performance.now();
      const result = await api("v1/search", {
        method: "POST",
        body: { query, mode: rerank ? "async" : "fast", limit },
        signal: controller.signal,
      });
      if (generation !== state.generation) return;
      const ms = Math.round(performance.now() - started);
      renderResult(result);
      const found = `${result.candidates.length} results in ${ms} ms`;
      if (result.job && !isFinal(result.job.state)) {
        setStatus(`${found} (stage 1). Verifying the top candidates…`);
        watchJob(result.job.id, generation, controller.signal);
      } else {
        setStatus(`${found} (${stagesText(result.stages)}).`);
      }
    } catch (err) {
      if (generation === state.generation) {
        setStatus("The search failed.");
        fail(err);
      }
    } finally {
      if (generation === state.generation) setBusy(false);
    }
  }

  const isFinal = (jobState) => ["succeeded", "failed", "cancelled"].includes(jobState);
  const sleep = (ms, signal) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener(
        "abort",
        () => {
          clearTimeout(timer);
          reject(new DOMException("stopped", "AbortError"));
        },
        { once: true },
      );
    });

  function stagesText(stages) {
    const list = stages && stages.length ? stages : [1];
    return list.length === 1 ? "stage 1" : `stages ${list.join(", ")}`;
  }

  async function watchJob(jobId, generation, signal) {
    state.jobId = jobId;
    const progress = $("#job-progress");
    progress.hidden = false;
    progress.value = 0;
    $("#cancel-job").hidden = false;
    let delay = POLL_FIRST_MS;
    let misses = 0;
    try {
      for (;;) {
        await sleep(delay, signal);
        let job;
        try {
          job = await api(`v1/rerank-jobs/${encodeURIComponent(jobId)}`, { signal });
          misses = 0;
        } catch (err) {
          if (err.name === "AbortError" || err.status !== 0 || ++misses > POLL_NETWORK_RETRIES) {
            throw err;
          }
          continue;
        }
        if (generation !== state.generation) return;
        progress.value = job.progress ?? 0;
        if (isFinal(job.state)) {
          finishJob(job);
          return;
        }
        delay = Math.min(POLL_MAX_MS, Math.round(delay * 1.5));
      }
    } catch (err) {
      if (err.name === "AbortError") return;
      showError(`Lost track of the reranking job: ${err.message}`);
    } finally {
      if (generation === state.generation) {
        progress.hidden = true;
        $("#cancel-job").hidden = true;
        state.jobId = null;
      }
    }
  }

  function finishJob(job) {
    if (job.state === "succeeded" && job.result) {
      const moved = renderResult(job.result);
      const n = job.result.candidates.length;
      setStatus(
        `Reranked ${n} results (${stagesText(job.result.stages)}): ` +
          `${moved} moved after verification.`,
      );
    } else if (job.state === "failed") {
      setStatus("Showing the stage-1 order: reranking failed.");
      showError(`Reranking failed: ${job.error || "no reason given"}`);
    } else {
      setStatus("Reranking stopped; showing the stage-1 order.");
    }
  }

  async function cancelJob() {
    const jobId = state.jobId;
    if (!jobId) return;
    try {
      await api(`v1/rerank-jobs/${encodeURIComponent(jobId)}`, { method: "DELETE" });
    } catch (err) {
      fail(err);
    }
  }

  // ------------------------------------------------------------------ results

  function renderResult(result) {
    const reranked = (result.stages || [1]).some((s) => s > 1);
    const cards = new Map();
    const fragment = document.createDocumentFragment();
    let moved = 0;
    result.candidates.forEach((candidate, index) => {
      const card = state.cards.get(candidate.id) || makeCard(candidate);
      if (updateCard(card, candidate, index + 1, reranked)) moved += 1;
      cards.set(candidate.id, card);
      fragment.appendChild(card);
    });
    $("#results").replaceChildren(fragment);
    state.cards = cards;
    renderTrace(result.trace);
    return moved;
  }

  function makeCard(candidate) {
    const card = $("#card-template").content.firstElementChild.cloneNode(true);
    card.dataset.id = candidate.id;
    setThumb($(".thumb", card), candidate.id, candidate.caption);
    $(".thumb-link", card).href = imageUrl(candidate.id);
    $(".thumb-link", card).setAttribute("aria-label", `Open image ${candidate.id} full size`);
    $(".caption", card).textContent = candidate.caption || candidate.id;
    $(".use-ref", card).setAttribute(
      "aria-label",
      `Use ${candidate.caption || candidate.id} as the reference image`,
    );
    const why = $(".why", card);
    why.addEventListener("toggle", () => {
      if (why.open) renderWhy(card);
    });
    $(".use-ref", card).addEventListener("click", () =>
      useReference({ id: candidate.id, caption: candidate.caption }),
    );
    return card;
  }

  /** Fills a card for its new position; returns whether it moved from its stage-1 rank. */
  function updateCard(card, candidate, rank, reranked) {
    card.candidate = candidate;
    $(".rank", card).textContent = `#${rank}`;
    const meta = Object.entries(candidate.metadata || {})
      .slice(0, 3)
      .map(([k, v]) => `${k}: ${v}`);
    $(".meta", card).textContent = [`score ${candidate.score.toFixed(3)}`, ...meta].join(" · ");
    const move = $(".move", card);
    const from = candidate.stage1_rank;
    const didMove = reranked && from !== rank;
    const accepted = Boolean(candidate.evaluation?.accepted);
    card.classList.toggle("accepted", accepted);
    $(".accepted-note", card).hidden = !accepted;
    move.hidden = !didMove;
    move.className = "move";
    if (didMove) {
      const up = rank < from;
      move.classList.add(up ? "up" : "down");
      move.replaceChildren(
        arrowSpan(up ? "▲" : "▼"),
        hiddenText(up ? "moved up from " : "moved down from "),
        document.createTextNode(`#${from}`),
      );
      move.title = `stage-1 rank ${from}, now ${rank}`;
    } else {
      move.replaceChildren();
    }
    if ($(".why", card).open) renderWhy(card);
    return didMove;
  }

  const arrowSpan = (arrow) => {
    const span = document.createElement("span");
    span.setAttribute("aria-hidden", "true");
    span.textContent = `${arrow} `;
    return span;
  };

  const hiddenText = (text) => {
    const span = document.createElement("span");
    span.className = "visually-hidden";
    span.textContent = text;
    return span;
  };

  const el = (tag, text, className) => {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  };

  const yesNo = (value) => (value ? "yes" : "no");

  function verdictTable(verdicts, held) {
    const table = el("table", undefined, "verdicts");
    table.append(el("caption", `Propositions: ${held} of ${verdicts.length} hold`));
    const head = el("tr");
    for (const h of ["Question", "Expected", "Answer", "Holds", "Cached"]) {
      const th = el("th", h);
      th.scope = "col";
      head.append(th);
    }
    table.append(el("thead"));
    table.tHead.append(head);
    const body = el("tbody");
    for (const v of verdicts) {
      const row = el("tr", undefined, v.satisfied ? "ok" : "bad");
      const answer = el("td", yesNo(v.answer));
      if (typeof v.p_yes === "number") answer.append(el("small", ` p=${v.p_yes.toFixed(2)}`));
      row.append(
        el("td", v.question),
        el("td", yesNo(v.expected)),
        answer,
        el("td", v.satisfied ? "✓ yes" : "✗ no"),
        el("td", yesNo(v.cached)),
      );
      body.append(row);
    }
    table.append(body);
    const scroller = el("div", undefined, "table-scroll");
    scroller.append(table);
    return scroller;
  }

  function renderWhy(card) {
    const c = card.candidate;
    const parts = [];
    if (c.reason) {
      const summary = el("p", undefined, "reason");
      summary.append(el("strong", "Summary: "), document.createTextNode(c.reason));
      parts.push(summary);
    }
    const scores =
      `Stage-1 rank #${c.stage1_rank}, score ${c.score.toFixed(3)} ` +
      `(image ${c.image_score.toFixed(3)}, caption ${c.caption_score.toFixed(3)}).`;
    parts.push(el("p", scores));
    if (c.verdicts && c.verdicts.length) {
      const held = c.satisfied ?? c.verdicts.filter((v) => v.satisfied).length;
      parts.push(verdictTable(c.verdicts, held));
    } else {
      parts.push(el("p", "Not verified (yet): only the top candidates are checked.", "muted"));
    }
    if (c.evaluation) {
      const verdict = c.evaluation.accepted ? "accepted" : "rejected";
      const text = c.evaluation.reason ? `: ${c.evaluation.reason}` : "";
      parts.push(el("p", `Evaluator ${verdict}${text}`, `evaluation ${verdict}`));
    }
    $(".why-body", card).replaceChildren(...parts);
  }

  function listSection(title, items) {
    if (!items || !items.length) return [];
    const list = el("ul");
    for (const item of items) list.append(el("li", item));
    return [el("h3", title), list];
  }

  function renderTrace(trace) {
    const box = $("#trace-box");
    if (!trace) {
      box.hidden = true;
      return;
    }
    const parts = [];
    if (trace.reference_caption) {
      parts.push(el("p", `Reference image read as: “${trace.reference_caption}”`));
    }
    parts.push(...listSection("Target descriptions", trace.descriptions));
    parts.push(
      ...listSection(
        "Edits",
        (trace.edits || []).map((e) => `${e.kind}: ${e.element}${e.detail ? ` (${e.detail})` : ""}`),
      ),
    );
    parts.push(
      ...listSection(
        "Propositions",
        (trace.propositions || []).map((p) => `${p.question} → expected ${yesNo(p.expected)}`),
      ),
    );
    parts.push(
      ...listSection(
        "Dialog rounds",
        (trace.dialog_rounds || []).map((r, i) => `round ${i}: ${r[r.length - 1] || ""}`),
      ),
    );
    const timings = Object.entries(trace.timings || {}).map(
      ([stage, s]) => `${stage}: ${(s * 1000).toFixed(0)} ms`,
    );
    parts.push(...listSection("Timings", timings));
    const models = Object.entries(trace.models || {}).map(([role, id]) => `${role}: ${id}`);
    parts.push(...listSection("Models", models));
    parts.push(...listSection("Notes", trace.notes));
    if (trace.intent_fallback) {
      parts.push(el("p", "The reasoner's answer was unusable; the raw text was searched.", "muted"));
    }
    $("#trace-body").replaceChildren(...parts);
    box.hidden = false;
  }

  // ------------------------------------------------------------------ query kinds

  function setKind(kind) {
    state.kind = kind;
    for (const panel of document.querySelectorAll(".kind-panel")) {
      panel.hidden = panel.dataset.kind !== kind;
    }
    const radio = $(`input[name=kind][value=${kind}]`);
    if (!radio.checked) radio.checked = true;
  }

  function renderReference() {
    const box = $("#reference-preview");
    const ref = state.reference;
    $("#clear-reference").hidden = !ref;
    if (!ref) {
      box.replaceChildren(el("p", "No reference image yet.", "muted"));
      return;
    }
    const img = document.createElement("img");
    img.className = "reference-image";
    img.width = 96;
    img.height = 96;
    let label;
    if (ref.id) {
      setThumb(img, ref.id, ref.caption);
      label = `Catalog image ${ref.id}${ref.caption ? `: ${ref.caption}` : ""}`;
    } else {
      img.src = ref.previewUrl;
      img.alt = `uploaded image ${ref.name}`;
      img.addEventListener("error", () => {
        img.replaceWith(el("p", "(the browser cannot preview this file)", "muted"));
      });
      label = `Uploaded: ${ref.name}`;
    }
    box.replaceChildren(img, el("p", label, "reference-label"));
  }

  function setReference(ref) {
    if (state.reference && state.reference.previewUrl) {
      URL.revokeObjectURL(state.reference.previewUrl);
    }
    state.reference = ref;
    renderReference();
  }

  function useReference(ref) {
    setKind("composed");
    setReference(ref);
    $("#upload-input").value = "";
    const input = $("#instruction-input");
    input.scrollIntoView({ block: "center" });
    input.focus();
  }

  function readUpload(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => {
        const url = String(reader.result);
        resolve(url.slice(url.indexOf(",") + 1));
      };
      reader.onerror = () => reject(new Error(`Cannot read ${file.name}: ${reader.error}`));
      reader.readAsDataURL(file);
    });
  }

  async function onUpload(event) {
    const file = event.target.files && event.target.files[0];
    if (!file) return;
    clearError();
    if (file.size > MAX_UPLOAD_BYTES) {
      showError(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; upload at most 25 MB.`);
      event.target.value = "";
      return;
    }
    try {
      const data = await readUpload(file);
      setReference({ data, name: file.name, previewUrl: URL.createObjectURL(file) });
    } catch (err) {
      fail(err);
    }
  }

  function renderTurns() {
    const list = $("#turns-list");
    list.replaceChildren(
      ...state.turns.map((turn, i) => {
        const item = el("li");
        item.append(el("span", `Q: ${turn.question} — A: ${turn.answer}`));
        const remove = el("button", "Remove");
        remove.type = "button";
        remove.setAttribute("aria-label", `Remove turn ${i + 1}`);
        remove.addEventListener("click", () => {
          state.turns.splice(i, 1);
          renderTurns();
          runSearch();
        });
        item.append(remove);
        return item;
      }),
    );
    $("#turns-empty").hidden = state.turns.length > 0;
  }

  function addTurn() {
    const question = $("#question-input").value.trim();
    const answer = $("#answer-input").value.trim();
    if (!$("#caption-input").value.trim()) {
      showError("Write the dialog's first caption before adding turns.");
      $("#caption-input").focus();
      return;
    }
    if (!answer) {
      showError("A turn needs an answer (and usually a question).");
      $("#answer-input").focus();
      return;
    }
    state.turns.push({ question, answer });
    $("#question-input").value = "";
    $("#answer-input").value = "";
    renderTurns();
    $("#question-input").focus();
    runSearch();
  }

  // ------------------------------------------------------------------ filters

  function filterControl(field) {
    const box = el("fieldset", undefined, "filter");
    box.dataset.filterField = field.name;
    box.append(el("legend", field.name));
    const values = field.values || [];
    const id = (suffix) => `filter-${field.name}-${suffix}`.replace(/[^A-Za-z0-9_-]/g, "_");
    if (field.kind === "boolean") {
      box.dataset.filterKind = "boolean";
      const select = el("select");
      select.setAttribute("aria-label", field.name);
      for (const [value, label] of [["", "any"], ["true", "yes"], ["false", "no"]]) {
        const option = el("option", label);
        option.value = value;
        select.append(option);
      }
      box.append(select);
    } else if (values.length && values.length <= MAX_CHECKBOX_VALUES) {
      box.dataset.filterKind = "values";
      values.forEach((value, i) => {
        const label = el("label", undefined, "check");
        const input = el("input");
        input.type = "checkbox";
        input.dataset.value = JSON.stringify(value);
        input.id = id(i);
        label.append(input, document.createTextNode(` ${value}`));
        box.append(label);
      });
    } else if (field.kind === "number") {
      box.dataset.filterKind = "range";
      for (const [bound, label] of [["gte", "from"], ["lte", "to"]]) {
        const input = el("input");
        input.type = "number";
        input.dataset.bound = bound;
        input.id = id(bound);
        input.placeholder = String(bound === "gte" ? field.min ?? "" : field.max ?? "");
        const text = el("label", label);
        text.htmlFor = input.id;
        box.append(text, input);
      }
    } else {
      box.dataset.filterKind = "exact";
      const input = el("input");
      input.type = "text";
      input.id = id("value");
      input.setAttribute("aria-label", `${field.name} equals`);
      box.append(input);
    }
    return box;
  }

  function updateFilterCount() {
    const n = Object.keys(selectedFilters()).length;
    const badge = $("#filters-count");
    badge.hidden = n === 0;
    badge.textContent = n ? `${n} on` : "";
  }

  async function loadCatalogInfo() {
    const holder = $("#filters-fields");
    try {
      const info = await api("v1/catalog/fields");
      state.fields = info.fields || [];
      const count = typeof info.count === "number" ? `${info.count} images` : "catalog ready";
      $("#catalog-info").textContent = `${count} · ${state.fields.length} filterable fields`;
      if (!state.fields.length) {
        holder.replaceChildren(el("p", "This catalog has no metadata to filter on.", "muted"));
        return;
      }
      holder.replaceChildren(...state.fields.map(filterControl));
    } catch (err) {
      $("#catalog-info").textContent = "Catalog unavailable";
      holder.replaceChildren(el("p", "Filters are unavailable.", "muted"));
      fail(err);
    }
  }

  // ------------------------------------------------------------------ catalog picker

  async function loadPickerPage(reset) {
    const grid = $("#catalog-grid");
    if (reset) {
      state.picker.offset = 0;
      grid.replaceChildren();
    }
    const params = new URLSearchParams({
      limit: String(PICKER_PAGE),
      offset: String(state.picker.offset),
    });
    if (state.picker.q) params.set("q", state.picker.q);
    $("#catalog-status").textContent = "Loading…";
    try {
      const page = await api(`v1/catalog/images?${params}`);
      for (const item of page.items) grid.append(pickerItem(item));
      state.picker.offset += page.items.length;
      const more = page.next_offset !== null && page.next_offset !== undefined;
      $("#catalog-more").hidden = !more;
      $("#catalog-status").textContent = grid.children.length
        ? `${grid.children.length} images shown; choose one.`
        : "No image matches.";
    } catch (err) {
      $("#catalog-status").textContent = "The catalog could not be listed.";
      fail(err);
    }
  }

  function pickerItem(item) {
    const li = el("li");
    const button = el("button", undefined, "pick");
    button.type = "button";
    const img = document.createElement("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.width = 160;
    img.height = 160;
    setThumb(img, item.id, item.caption);
    img.alt = "";
    button.append(img, el("span", item.caption || item.id));
    button.addEventListener("click", () => {
      $("#catalog-dialog").close();
      useReference({ id: item.id, caption: item.caption });
    });
    li.append(button);
    return li;
  }

  function openPicker() {
    $("#catalog-dialog").showModal();
    $("#catalog-search").focus();
    if (!$("#catalog-grid").children.length) loadPickerPage(true);
  }

  // ------------------------------------------------------------------ wiring

  function wire() {
    $("#search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      runSearch();
    });
    $("#text-input").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        runSearch();
      }
    });
    for (const radio of document.querySelectorAll("input[name=kind]")) {
      radio.addEventListener("change", () => setKind(radio.value));
    }
    $("#upload-input").addEventListener("change", onUpload);
    $("#pick-reference").addEventListener("click", openPicker);
    $("#clear-reference").addEventListener("click", () => {
      setReference(null);
      $("#upload-input").value = "";
    });
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
      state.turns = [];
      renderTurns();
      $("#caption-input").focus();
    });
    $("#filters-fields").addEventListener("change", updateFilterCount);
    $("#filters-fields").addEventListener("input", updateFilterCount);
    $("#clear-filters").addEventListener("click", () => {
      for (const input of document.querySelectorAll("#filters-fields input")) {
        if (input.type === "checkbox") input.checked = false;
        else input.value = "";
      }
      for (const select of document.querySelectorAll("#filters-fields select")) select.value = "";
      updateFilterCount();
    });
    $("#cancel-job").addEventListener("click", cancelJob);
    $("#catalog-search-button").addEventListener("click", () => {
      state.picker.q = $("#catalog-search").value.trim();
      loadPickerPage(true);
    });
    $("#catalog-search").addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        $("#catalog-search-button").click();
      }
    });
    $("#catalog-more").addEventListener("click", () => loadPickerPage(false));
  }

  wire();
  setKind($("input[name=kind]:checked").value);
  renderTurns();
  loadCatalogInfo();
})();
