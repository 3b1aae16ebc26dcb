/* "Download results (JSON)": the query, the link, every fetched candidate and the trace. */

/** Downloads the results the page holds (all fetched, not only those shown) as JSON. */
export function downloadResults(view) {
  const body = {
    exported_at: new Date().toISOString(),
    url: window.location.href,
    query: view.query,
    stages: view.resultStages,
    job: view.job ? { id: view.job.id, state: view.jobState || view.job.state } : null,
    candidates: view.candidates,
    trace: view.trace,
  };
  const blob = new Blob([JSON.stringify(body, null, 2)], { type: "application/json" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `imagescope-results-${new Date().toISOString().slice(0, 19).replace(/:/g, "")}.json`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}
