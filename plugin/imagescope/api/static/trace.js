/*
 * "How the query was understood" (the trace panel) and "Why this result?"
 * (a dialog, so opening it never moves the result grid).
 */
import { checkLabel } from "./cards.js";
import { $, duration, el, table, yesNo } from "./dom.js";

/** Stage names in the trace, in order, in words. */
const STAGES = [
  ["intent", "Understanding the request"],
  ["retrieve", "Finding candidates (stage 1)"],
  ["propositions", "Writing the checks"],
  ["verify", "Checking candidates (stage 2)"],
  ["evaluate", "Final judgement (stage 3)"],
];

/** What each model does, in words a shopper reads. */
const ROLES = {
  embedder: "Finds look-alike pictures and texts",
  reasoner: "Reads your request and writes what to look for",
  captioner: "Describes the reference picture in words",
  verifier: "Answers yes/no checks about each top picture",
  evaluator: "Compares the best pictures with your request",
};

function modelName(id) {
  if (id === "rule") return "built-in rules (no language model)";
  return id;
}

function listSection(title, items) {
  if (!items || !items.length) return [];
  const list = el("ul");
  for (const item of items) list.append(el("li", item));
  return [el("h3", title), list];
}

function timingsTable(timings) {
  const known = STAGES.filter(([key]) => key in timings);
  const extra = Object.keys(timings).filter((k) => !STAGES.some(([key]) => key === k));
  const rows = [...known, ...extra.map((k) => [k, k])].map(([key, label]) => ({
    cells: [label, duration(timings[key])],
  }));
  if (!rows.length) return [];
  return [table("Time per stage", ["Stage", "Time"], rows, "trace-table timings")];
}

function costsTable(costs) {
  const rows = Object.entries(costs || {}).map(([role, c]) => ({
    cells: [role, c.calls, c.tokens, c.cache_hits, duration(c.seconds)],
  }));
  if (!rows.length) return [];
  return [
    table(
      "Model use",
      ["Model", "Calls", "Tokens", "Answers from cache", "Time"],
      rows,
      "trace-table costs",
    ),
  ];
}

function modelsList(models) {
  const entries = Object.entries(models || {});
  if (!entries.length) return [];
  const list = el("dl", undefined, "models");
  for (const [role, id] of entries) {
    list.append(el("dt", ROLES[role] || role));
    const dd = el("dd", modelName(id));
    dd.title = `${role}: ${id}`;
    list.append(dd);
  }
  return [el("h3", "Models"), list];
}

/** Fills the trace panel; hides it when there is no trace. */
export function renderTrace(trace) {
  const box = $("#trace-box");
  if (!trace) {
    box.hidden = true;
    $("#trace-body").replaceChildren();
    return;
  }
  const parts = [];
  if (trace.reference_caption) {
    parts.push(el("p", `Reference image read as: “${trace.reference_caption}”`));
  }
  parts.push(...listSection("Target descriptions", trace.descriptions));
  const edits = (trace.edits || []).map(
    (e) => `${e.kind}: ${e.element}${e.detail ? ` (${e.detail})` : ""}`,
  );
  parts.push(...listSection("Edits", edits));
  const props = (trace.propositions || []).map(
    (p) => `${p.question} → expected ${yesNo(p.expected)}`,
  );
  parts.push(...listSection("Checks (propositions)", props));
  const rounds = (trace.dialog_rounds || []).map((r, i) => `round ${i}: ${r[r.length - 1] || ""}`);
  parts.push(...listSection("Dialog rounds", rounds));
  parts.push(...timingsTable(trace.timings || {}));
  parts.push(...costsTable(trace.costs));
  parts.push(...modelsList(trace.models));
  parts.push(...listSection("Notes", trace.notes));
  if (trace.intent_fallback) {
    parts.push(el("p", "The reasoner's answer was unusable; the raw text was searched.", "muted"));
  }
  $("#trace-body").replaceChildren(...parts);
  box.hidden = false;
}

function verdictTable(verdicts, statements) {
  const held = verdicts.filter((v) => v.satisfied).length;
  const rows = verdicts.map((v) => {
    const answer = el("span", yesNo(v.answer));
    if (typeof v.p_yes === "number") answer.append(el("small", ` p=${v.p_yes.toFixed(2)}`));
    return {
      className: v.satisfied ? "ok" : "bad",
      cells: [v.question, checkLabel(v, statements), answer, v.satisfied ? "✓ yes" : "✗ no", yesNo(v.cached)],
    };
  });
  return table(
    `Checks: ${held} of ${verdicts.length} passed`,
    ["Question", "Looks for", "Answer", "Passed", "Cached"],
    rows,
    "verdicts",
  );
}

/** Opens the "Why this result?" dialog for a card's candidate. */
export function openWhy(candidate, rank, ctx) {
  const dialog = $("#why-dialog");
  $("#why-title").textContent = `Why #${rank}: ${candidate.caption || candidate.id}`;
  const parts = [];
  if (candidate.reason) {
    const summary = el("p", undefined, "reason");
    summary.append(el("strong", "Summary: "), document.createTextNode(candidate.reason));
    parts.push(summary);
  }
  const c = candidate;
  parts.push(
    el(
      "p",
      `Stage-1 rank #${c.stage1_rank}; similarity ${c.score.toFixed(3)} ` +
        `(picture ${c.image_score.toFixed(3)}, caption ${c.caption_score.toFixed(3)}).`,
    ),
  );
  if (c.verdicts && c.verdicts.length) parts.push(verdictTable(c.verdicts, ctx.statements));
  else if (ctx.jobRunning) parts.push(el("p", "Not verified yet: the top results are being checked.", "muted"));
  else if (ctx.verifying) parts.push(el("p", "Not verified: only the top results are checked.", "muted"));
  else parts.push(el("p", "Not verified: this search ran without verification.", "muted"));
  if (c.evaluation) {
    const verdict = c.evaluation.accepted ? "accepted" : "rejected";
    const text = c.evaluation.reason ? `: ${c.evaluation.reason}` : "";
    parts.push(el("p", `Evaluator ${verdict}${text}`, `evaluation ${verdict}`));
  }
  $("#why-body").replaceChildren(...parts);
  dialog.showModal();
}
