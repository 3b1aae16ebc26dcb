/*
 * A search as URL parameters, so reload, bookmarks and shared links restore it
 * and the browser's back/forward buttons walk through searches.
 *
 *   kind=text      &q=<text>
 *   kind=composed  &ref=<catalog id> | &ref_url=<http(s) URL> | &ref_upload=<file name>
 *                  &edit=<instruction>
 *   kind=dialog    &caption=<text> &tq=<question> &ta=<answer>  (one tq/ta pair per turn)
 *   any kind       &f.<field>=<value> (repeated for several values; a..b for ranges)
 *                  &stages=1,2,3
 *
 * An uploaded reference cannot travel in a URL: only its file name does, and the
 * page asks for the file again.
 */

export const KINDS = ["text", "composed", "dialog"];
export const DEFAULT_STAGES = [1, 2, 3];

/** URL parameters for a search state. */
export function toParams(state) {
  const params = new URLSearchParams();
  params.set("kind", state.kind);
  if (state.kind === "text") {
    params.set("q", state.text);
  } else if (state.kind === "composed") {
    const ref = state.ref || {};
    if (ref.id) params.set("ref", ref.id);
    else if (ref.url) params.set("ref_url", ref.url);
    else if (ref.upload) params.set("ref_upload", ref.upload);
    params.set("edit", state.edit);
  } else {
    params.set("caption", state.caption);
    for (const turn of state.turns) {
      params.append("tq", turn.question);
      params.append("ta", turn.answer);
    }
  }
  for (const [name, value] of state.filters) params.append(`f.${name}`, value);
  params.set("stages", state.stages.join(","));
  return params;
}

function parseStages(text) {
  if (text === null) return [...DEFAULT_STAGES];
  const stages = text
    .split(",")
    .map((s) => Number(s.trim()))
    .filter((s) => [1, 2, 3].includes(s));
  if (!stages.includes(1)) stages.unshift(1);
  return [...new Set(stages)].sort();
}

/** The search state in URL parameters, or null when they hold no search. */
export function fromParams(params) {
  const kind = params.get("kind");
  if (!KINDS.includes(kind)) return null;
  const tq = params.getAll("tq");
  const ta = params.getAll("ta");
  let ref = null;
  if (params.get("ref")) ref = { id: params.get("ref") };
  else if (params.get("ref_url")) ref = { url: params.get("ref_url") };
  else if (params.get("ref_upload")) ref = { upload: params.get("ref_upload") };
  const filters = [];
  for (const [key, value] of params) {
    if (key.startsWith("f.") && key.length > 2) filters.push([key.slice(2), value]);
  }
  return {
    kind,
    text: params.get("q") || "",
    ref,
    edit: params.get("edit") || "",
    caption: params.get("caption") || "",
    turns: ta.map((answer, i) => ({ question: tq[i] || "", answer })),
    filters,
    stages: parseStages(params.get("stages")),
  };
}

/** Whether two parameter sets hold the same search (order of keys aside). */
export function sameSearch(a, b) {
  const norm = (p) => [...p].map(([k, v]) => `${k}=${v}`).sort().join("&");
  return norm(a) === norm(b);
}
