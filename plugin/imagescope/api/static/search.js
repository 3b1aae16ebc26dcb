/*
 * Running a search and showing its results:
 *   POST   v1/search               stage 1 now (mode=fast), or stage 1 + a rerank job (async)
 *   GET    v1/rerank-jobs/{id}     polled until final; the sticky status bar shows progress
 *   POST   v1/rerank-jobs/{id}/cancel  "Stop reranking" (the job stays readable)
 *   DELETE v1/rerank-jobs/{id}     a search replaced by a new one
 * Results come in pages of PAGE cards ("Show more results", or scrolling to the
 * end); past the fetched list, stage 1 is asked for a longer one.
 */
import { api, refreshImageToken } from "./api.js";
import { makeCard, stems, updateCard } from "./cards.js";
import { $, duration } from "./dom.js";
import { downloadResults } from "./export.js";
import { openWhy, renderTrace } from "./trace.js";

const PAGE = 24;
const FETCH_STEP = 100;
const MAX_FETCH = 1000;
const POLL_FIRST_MS = 300;
const POLL_MAX_MS = 2000;
const POLL_NETWORK_RETRIES = 5;

const view = {
  query: null,
  stages: [1],
  candidates: [],
  trace: null,
  resultStages: [1],
  job: null, // {id, state}
  jobState: null, // null | "running" | "succeeded" | "failed" | "cancelled"
  verifyCount: 0,
  fetched: 0,
  exhausted: true,
  shown: 0,
  cards: new Map(),
  generation: 0,
  controller: null,
  stage1Ms: 0,
  rerankStarted: 0,
  loadingMore: false,
  options: { top_k: 20 },
};
let hooks = { error: () => {}, clearError: () => {}, actions: {}, empty: () => null };

export const currentView = () => view;

export function initSearch(options) {
  hooks = options;
  $("#cancel-job").addEventListener("click", cancelJob);
  $("#load-more").addEventListener("click", showMore);
  $("#export-results").addEventListener("click", () => downloadResults(view));
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && view.shown && !view.loadingMore) showMore();
  });
  observer.observe($("#scroll-sentinel"));
}

export function setPageOptions(options) {
  view.options = { ...view.options, ...options };
}

// ------------------------------------------------------------------ status bar

function setStatus({ stage1, rerank, accepted }) {
  if (stage1 !== undefined) $("#status-stage1").textContent = stage1;
  if (rerank !== undefined) $("#status-rerank").textContent = rerank;
  if (accepted !== undefined) $("#status-accepted").textContent = accepted;
}

function showProgress(visible, verified = 0) {
  $("#rerank-progress").hidden = !visible;
  const n = view.verifyCount;
  $("#job-progress").max = Math.max(1, n);
  $("#job-progress").value = verified;
  $("#job-progress-label").textContent = `Verified ${verified} of ${n}`;
}

function queryWords(query) {
  if (!query) return [];
  const texts = [query.text, query.instruction, query.caption];
  for (const turn of query.turns || []) texts.push(turn.question, turn.answer);
  texts.push(...Object.keys(query.filters || {}));
  return stems(texts.filter(Boolean).join(" "));
}

function context() {
  const best = Math.max(0, ...view.candidates.map((c) => c.score));
  const statements = new Map(
    (view.trace?.propositions || []).map((p) => [p.question, p.statement || ""]),
  );
  return {
    best,
    statements,
    queryStems: queryWords(view.query),
    reranked: view.resultStages.some((s) => s > 1),
    jobRunning: view.jobState === "running",
    verifying: view.stages.includes(2),
  };
}

// ------------------------------------------------------------------ rendering

function render() {
  const ctx = context();
  const cards = new Map();
  const fragment = document.createDocumentFragment();
  let moved = 0;
  view.candidates.slice(0, view.shown).forEach((candidate, index) => {
    const card = view.cards.get(candidate.id) || makeCard(candidate, cardActions());
    if (updateCard(card, candidate, index + 1, ctx)) moved += 1;
    cards.set(candidate.id, card);
    fragment.appendChild(card);
  });
  $("#results").replaceChildren(fragment);
  view.cards = cards;
  renderTrace(view.trace);
  renderCount();
  renderEmpty();
  return moved;
}

function cardActions() {
  return {
    ...hooks.actions,
    why: (candidate, card) => openWhy(candidate, Number(card.dataset.rank), context()),
  };
}

function moreAvailable() {
  return view.shown < view.candidates.length || (!view.exhausted && view.fetched < MAX_FETCH);
}

function renderCount() {
  const total = view.candidates.length;
  const more = !view.exhausted && view.fetched < MAX_FETCH ? "+" : "";
  $("#result-count").textContent = view.query && total ? `Showing ${view.shown} of ${total}${more}` : "";
  $("#load-more").hidden = !(view.query && total && moreAvailable());
  $("#export-results").hidden = !(view.query && total);
}

function renderEmpty() {
  const box = $("#empty-state");
  const empty = view.query && view.candidates.length === 0;
  box.hidden = !empty;
  if (empty) box.replaceChildren(...hooks.empty(view.query));
  else box.replaceChildren();
}

/** Clears results, trace and status (a failed search must not leave stale results). */
export function clearResults() {
  view.candidates = [];
  view.trace = null;
  view.shown = 0;
  view.query = null;
  view.cards = new Map();
  $("#results").replaceChildren();
  renderTrace(null);
  renderCount();
  renderEmpty();
  showProgress(false);
  setStatus({ stage1: "", rerank: "", accepted: "" });
}

// ------------------------------------------------------------------ searching

function stopJob() {
  if (view.controller) view.controller.abort();
  view.controller = null;
  const job = view.job;
  if (job && view.jobState === "running") {
    // The previous query's rerank is no longer wanted: free the workers.
    api(`v1/rerank-jobs/${encodeURIComponent(job.id)}`, { method: "DELETE" }).catch(() => {});
  }
  view.job = null;
  view.jobState = null;
  showProgress(false);
}

/** Runs ``query`` with ``stages``; resolves true when stage 1 came back. */
export async function search(query, stages) {
  hooks.clearError();
  stopJob();
  const generation = ++view.generation;
  const controller = new AbortController();
  view.controller = controller;
  const rerank = stages.length > 1;
  $("#search-button").disabled = true;
  $("#search-form").setAttribute("aria-busy", "true");
  setStatus({ stage1: "Searching…", rerank: "", accepted: "" });
  try {
    await refreshImageToken();
    const started = performance.now();
    const result = await api("v1/search", {
      method: "POST",
      body: { query, mode: rerank ? "async" : "fast", stages, limit: FETCH_STEP },
      signal: controller.signal,
    });
    if (generation !== view.generation) return false;
    view.stage1Ms = performance.now() - started;
    takeStage1(query, stages, result);
    return true;
  } catch (err) {
    if (err.name === "AbortError" || generation !== view.generation) return false;
    clearResults();
    setStatus({ stage1: "The search failed." });
    hooks.error(err.message, { retry: err.status === 0 || err.status >= 500 });
    return false;
  } finally {
    if (generation === view.generation) {
      $("#search-button").disabled = false;
      $("#search-form").setAttribute("aria-busy", "false");
    }
  }
}

function takeStage1(query, stages, result) {
  Object.assign(view, {
    query,
    stages,
    candidates: result.candidates,
    trace: result.trace,
    resultStages: result.stages || [1],
    fetched: FETCH_STEP,
    exhausted: result.candidates.length < FETCH_STEP,
    shown: Math.min(PAGE, result.candidates.length),
    verifyCount: Math.min(view.options.top_k, result.candidates.length),
    job: result.job || null,
    jobState: null,
  });
  const n = result.candidates.length;
  const ms = duration(view.stage1Ms / 1000);
  const stage1 = n ? `Stage 1: ${n} results in ${ms}.` : `No results (stage 1, ${ms}).`;
  const watching = view.job && !["succeeded", "failed", "cancelled"].includes(view.job.state);
  if (watching && n) {
    view.jobState = "running";
    render();
    setStatus({ stage1, rerank: `Verifying the top ${view.verifyCount}…` });
    watchJob(view.job.id, view.generation, view.controller.signal);
  } else {
    if (watching) stopJob();
    render();
    let rerank = stages.length > 1 ? "" : "Verification off.";
    if (result.rerank && result.rerank.state === "unavailable") {
      rerank = "Verification is unavailable right now; showing the stage-1 order.";
      hooks.error(`Reranking is unavailable: ${result.rerank.detail || "the job service is down"}`, {
        retry: true,
      });
    }
    setStatus({ stage1, rerank });
  }
}

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

/** Candidates verified so far, from the job's progress (stage boundaries: 0.2, 0.7, 1). */
const verifiedSoFar = (progress) => (progress >= 0.7 ? view.verifyCount : 0);

/** The rerank's current step in words, from the same progress marks. */
function phaseText(progress) {
  if (progress < 0.7) return `Verifying the top ${view.verifyCount}…`;
  return view.stages.includes(3) ? "Verified; the evaluator is judging the best…" : "Verified; ranking…";
}

async function pollOnce(jobId, signal) {
  for (let misses = 0; ; misses += 1) {
    try {
      return await api(`v1/rerank-jobs/${encodeURIComponent(jobId)}`, { signal });
    } catch (err) {
      if (err.name === "AbortError" || err.status !== 0 || misses >= POLL_NETWORK_RETRIES) throw err;
      await sleep(POLL_FIRST_MS, signal);
    }
  }
}

async function watchJob(jobId, generation, signal) {
  view.rerankStarted = performance.now();
  showProgress(true, 0);
  let delay = POLL_FIRST_MS;
  try {
    for (;;) {
      await sleep(delay, signal);
      const job = await pollOnce(jobId, signal);
      if (generation !== view.generation) return;
      showProgress(true, verifiedSoFar(job.progress ?? 0));
      if (job.state === "running") setStatus({ rerank: phaseText(job.progress ?? 0) });
      if (["succeeded", "failed", "cancelled"].includes(job.state)) {
        finishJob(job);
        return;
      }
      delay = Math.min(POLL_MAX_MS, Math.round(delay * 1.5));
    }
  } catch (err) {
    if (err.name === "AbortError" || generation !== view.generation) return;
    view.jobState = "failed";
    render();
    setStatus({ rerank: "Lost track of the reranking; showing the stage-1 order." });
    hooks.error(`Lost track of the reranking job: ${err.message}`, { retry: true });
  } finally {
    if (generation === view.generation) showProgress(false);
  }
}

function finishJob(job) {
  const took = duration((performance.now() - view.rerankStarted) / 1000);
  view.jobState = job.state;
  if (job.state === "succeeded" && job.result) {
    const extra = view.candidates.filter((c) => !job.result.candidates.some((r) => r.id === c.id));
    view.candidates = [...job.result.candidates, ...extra];
    view.trace = job.result.trace;
    view.resultStages = job.result.stages || [1];
    const moved = render();
    const verified = view.candidates.filter((c) => (c.verdicts || []).length).length;
    const accepted = view.candidates.filter((c) => c.evaluation?.accepted).length;
    setStatus({
      rerank: `Reranked in ${took}: ${verified} of ${view.verifyCount} verified, ${moved} moved.`,
      accepted: view.resultStages.includes(3) ? `${accepted} accepted by the evaluator.` : "",
    });
  } else if (job.state === "failed") {
    render();
    setStatus({ rerank: "Reranking failed; showing the stage-1 order." });
    hooks.error(`Reranking failed: ${job.error || "no reason given"}`, { retry: true });
  } else {
    render();
    setStatus({ rerank: "Reranking stopped; showing the stage-1 order." });
  }
}

/** "Stop reranking": the job's final state comes back from the cancel itself. */
async function cancelJob() {
  if (!view.job || view.jobState !== "running") return;
  const generation = view.generation;
  try {
    const path = `v1/rerank-jobs/${encodeURIComponent(view.job.id)}/cancel`;
    const job = await api(path, { method: "POST" });
    if (generation !== view.generation || view.jobState !== "running") return;
    if (view.controller) view.controller.abort(); // stop polling a job that is over
    showProgress(false);
    finishJob(["succeeded", "failed"].includes(job.state) ? job : { ...job, state: "cancelled" });
  } catch (err) {
    hooks.error(err.message, { retry: false });
  }
}

// ------------------------------------------------------------------ paging and export

async function fetchMore() {
  const limit = Math.min(MAX_FETCH, view.fetched + FETCH_STEP);
  const generation = view.generation;
  const result = await api("v1/search", {
    method: "POST",
    body: { query: view.query, mode: "fast", stages: [1], limit },
  });
  if (generation !== view.generation) return;
  const have = new Set(view.candidates.map((c) => c.id));
  view.candidates.push(...result.candidates.filter((c) => !have.has(c.id)));
  view.fetched = limit;
  view.exhausted = result.candidates.length < limit || limit >= MAX_FETCH;
}

/** Shows the next page of results, fetching a longer stage-1 list when needed. */
export async function showMore() {
  if (view.loadingMore || !view.query || !moreAvailable()) return;
  view.loadingMore = true;
  $("#load-more").disabled = true;
  try {
    if (view.shown + PAGE > view.candidates.length && !view.exhausted) await fetchMore();
    view.shown = Math.min(view.candidates.length, view.shown + PAGE);
    render();
  } catch (err) {
    hooks.error(`More results could not be loaded: ${err.message}`, { retry: false });
  } finally {
    view.loadingMore = false;
    $("#load-more").disabled = false;
  }
}
