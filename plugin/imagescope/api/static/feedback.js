/*
 * Messages where the user is looking: errors (focused, announced by role=alert)
 * in the status bar over the results, next to the form's Search button, or
 * next to the reference inputs; and empty states that say why and what to try.
 */
import { $, button, el } from "./dom.js";
import { describeFilters } from "./filters.js";

let retryAction = null;

/** What the Retry button of the next errors does (null: no Retry button). */
export function setRetry(action) {
  retryAction = action;
}

const ERROR_REGIONS = { results: "#error-region", form: "#form-error", reference: "#reference-error" };

/**
 * Shows an error where the user is looking, and moves focus to it: a search's
 * failure in the sticky status bar over the results; a problem with the form
 * next to the Search button; a refused reference image next to its inputs.
 */
export function showError(message, { retry = false, where = "results" } = {}) {
  clearError();
  const region = $(ERROR_REGIONS[where]);
  const parts = [el("p", message)];
  if (retry && retryAction) {
    const again = button("Retry", "retry");
    again.addEventListener("click", () => retryAction());
    parts.push(again);
  }
  const dismiss = button("Dismiss");
  dismiss.addEventListener("click", clearError);
  parts.push(dismiss);
  region.replaceChildren(...parts);
  region.classList.add("visible");
  region.focus({ preventScroll: true });
  region.scrollIntoView({ block: "nearest" });
}

export function clearError() {
  for (const selector of Object.values(ERROR_REGIONS)) {
    $(selector).replaceChildren();
    $(selector).classList.remove("visible");
  }
}

/**
 * Why a search found nothing, and what to try: ingest images (an empty
 * catalog), remove a filter (``removeFilter(name)`` searches again), other words.
 */
export function emptyState(query, { catalogCount, removeFilter }) {
  if (catalogCount === 0) {
    const how = el("p");
    how.append("Ingest images first, for example ", el("code", "imagescope ingest ./photos"), ", then search again.");
    return [el("p", "The catalog has no images yet.", "empty-title"), how];
  }
  const filters = describeFilters();
  if (filters.length) {
    const out = [
      el("p", `No image matches this query with the filter${filters.length > 1 ? "s" : ""} set.`, "empty-title"),
      el("p", "Try removing a filter:"),
    ];
    const row = el("div", undefined, "row");
    for (const [name, words] of filters) {
      const remove = button(`Remove “${words}”`);
      remove.addEventListener("click", () => removeFilter(name));
      row.append(remove);
    }
    return [...out, row];
  }
  const hint = query.kind === "composed" ? "Try a shorter edit, or another reference image." : "Try fewer or other words.";
  return [el("p", "No image matches this query.", "empty-title"), el("p", hint)];
}
