/*
 * Result cards: final rank, a relevance from 0 to 100, the checks in words,
 * the metadata the query mentions first, and the actions on a result.
 * Cards are keyed by candidate id and reused when the reranked order arrives,
 * so thumbnails are not fetched twice.
 */
import { imageSrc, setThumb } from "./api.js";
import { $, button, el, hiddenText, shownOnly } from "./dom.js";

const MAX_LABELS = 4;

/** Lower-case words of a text. */
export function stems(text) {
  return String(text).toLowerCase().match(/[a-z0-9]+/g) || [];
}

/** Whether two words are forms of one word ("square"/"squares", "stripes"/"striped"). */
function sameWord(a, b) {
  if (a === b) return true;
  const root = (w) => (w.length > 3 ? w.replace(/(es|ed|s|d)$/, "") : w);
  const [ra, rb] = [root(a), root(b)];
  const [short, long] = ra.length <= rb.length ? [ra, rb] : [rb, ra];
  return short.length >= 3 && long.startsWith(short) && long.length - short.length <= 3;
}

/** A check's short label: "striped" for "The triangles are striped.". */
export function checkLabel(verdict, statements) {
  const statement = statements.get(verdict.question) || "";
  const match = statement.match(/\b(?:is|are)\s+(.+?)[.?!]?\s*$/i);
  const label = match ? match[1] : verdict.question.replace(/\?\s*$/, "");
  return verdict.expected ? label : `not ${label}`;
}

function labelList(labels) {
  const shown = labels.slice(0, MAX_LABELS).join(", ");
  return labels.length > MAX_LABELS ? `${shown}, …` : shown;
}

/** "2 of 3 checks passed: striped, triangles; failed: blue". */
export function checksSummary(verdicts, statements) {
  const passed = verdicts.filter((v) => v.satisfied).map((v) => checkLabel(v, statements));
  const failed = verdicts.filter((v) => !v.satisfied).map((v) => checkLabel(v, statements));
  let text = `${passed.length} of ${verdicts.length} checks passed`;
  if (passed.length) text += `: ${labelList(passed)}`;
  if (failed.length) text += `; failed: ${labelList(failed)}`;
  return text;
}

/** Relevance 0-100 and what it is based on. */
export function relevance(candidate, best) {
  const verdicts = candidate.verdicts || [];
  if (verdicts.length) {
    const passed = verdicts.filter((v) => v.satisfied).length;
    return { value: Math.round((100 * passed) / verdicts.length), basis: "checks" };
  }
  const ratio = best > 0 ? Math.max(0, candidate.score) / best : 0;
  return { value: Math.round(100 * Math.min(1, ratio)), basis: "similarity" };
}

/** Metadata entries, those the query mentions first: [[key, value, mentioned], ...]. */
export function orderedMetadata(metadata, queryStems) {
  const said = (word) => queryStems.some((q) => sameWord(q, word));
  const entries = Object.entries(metadata || {}).map(([key, value]) => {
    const valueStems = stems(Array.isArray(value) ? value.join(" ") : value);
    const mentioned =
      stems(key).some(said) || (valueStems.length > 0 && valueStems.every(said));
    return [key, value, mentioned];
  });
  return [...entries.filter((e) => e[2]), ...entries.filter((e) => !e[2])];
}

/** A new card for ``candidate``; ``actions`` maps action name -> handler(candidate). */
export function makeCard(candidate, actions) {
  const card = $("#card-template").content.firstElementChild.cloneNode(true);
  const name = candidate.caption || candidate.id;
  card.dataset.id = candidate.id;
  setThumb($(".thumb", card), candidate.id, name);
  $(".thumb-link", card).href = imageSrc(candidate.id);
  $(".thumb-link", card).setAttribute("aria-label", `Open image ${candidate.id} full size`);
  $(".caption", card).textContent = name;
  const row = $(".actions", card);
  const specs = [
    ["why", "Why this result?"],
    ["more", "More like this"],
    ["caption", "Search with this caption"],
    ["reference", "Use as reference"],
  ];
  for (const [action, text] of specs) {
    // The accessible name starts with the visible text and says which result.
    const b = button(text, `card-action ${action}`);
    b.append(hiddenText(`: ${name}`));
    b.addEventListener("click", () => actions[action](card.candidate, card));
    row.append(b);
  }
  return card;
}

function verificationText(candidate, ctx) {
  const verdicts = candidate.verdicts || [];
  if (verdicts.length) return checksSummary(verdicts, ctx.statements);
  if (candidate.reason && /unreadable/.test(candidate.reason)) return candidate.reason;
  if (ctx.jobRunning) return "Not verified yet: the top results are being checked.";
  if (!ctx.verifying) return "";
  return "Not verified: only the top results are checked.";
}

function fillMove(move, from, rank, didMove) {
  move.hidden = !didMove;
  move.className = "move";
  move.removeAttribute("title");
  if (!didMove) {
    move.replaceChildren();
    return;
  }
  const up = rank < from;
  move.classList.add(up ? "up" : "down");
  move.replaceChildren(
    shownOnly(up ? "▲ " : "▼ "),
    hiddenText(up ? "moved up from " : "moved down from "),
    document.createTextNode(`#${from}`),
  );
  move.title = `stage-1 rank ${from}, now ${rank}`;
}

function fillMeta(box, candidate, ctx) {
  const parts = orderedMetadata(candidate.metadata, ctx.queryStems).map(([k, v, mentioned]) => {
    const item = el("li", `${k}: ${Array.isArray(v) ? v.join(", ") : v}`);
    if (mentioned) item.className = "mentioned";
    return item;
  });
  box.replaceChildren(...parts);
}

/**
 * Fills a card for its position. ``ctx``: reranked, jobRunning, verifying, best
 * (top stage-1 score), statements (question -> statement), queryStems.
 * Returns whether the card moved from its stage-1 rank.
 */
export function updateCard(card, candidate, rank, ctx) {
  card.candidate = candidate;
  card.dataset.rank = String(rank);
  $(".rank", card).replaceChildren(hiddenText("Rank "), document.createTextNode(`#${rank}`));
  const rel = relevance(candidate, ctx.best);
  const relBox = $(".relevance", card);
  relBox.dataset.value = String(rel.value);
  relBox.dataset.basis = rel.basis;
  relBox.textContent =
    rel.basis === "checks" ? `Relevance ${rel.value}/100` : `Similarity ${rel.value}/100`;
  relBox.title =
    rel.basis === "checks"
      ? "Share of the query's checks this image passed"
      : "Similarity to the query, relative to the best match (best = 100)";
  $(".relevance-bar", card).style.setProperty("--value", `${rel.value}%`);
  const checks = $(".checks", card);
  checks.textContent = verificationText(candidate, ctx);
  checks.hidden = !checks.textContent;
  checks.classList.toggle("pending", !(candidate.verdicts || []).length);
  const accepted = Boolean(candidate.evaluation?.accepted);
  card.classList.toggle("accepted", accepted);
  $(".accepted-note", card).hidden = !accepted;
  fillMeta($(".meta", card), candidate, ctx);
  const from = candidate.stage1_rank;
  const didMove = ctx.reranked && from !== rank;
  fillMove($(".move", card), from, rank, didMove);
  return didMove;
}
