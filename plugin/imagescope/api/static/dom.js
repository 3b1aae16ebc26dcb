/* Small DOM helpers shared by the page's modules. */

export const $ = (selector, root = document) => root.querySelector(selector);

export function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

export function button(text, className, label) {
  const node = el("button", text, className);
  node.type = "button";
  if (label) node.setAttribute("aria-label", label);
  return node;
}

/** Text only screen readers read. */
export function hiddenText(text) {
  return el("span", text, "visually-hidden");
}

/** Text only eyes read (a symbol a screen reader should skip). */
export function shownOnly(text) {
  const span = el("span", text);
  span.setAttribute("aria-hidden", "true");
  return span;
}

export const yesNo = (value) => (value ? "yes" : "no");

/** A duration in words: "26 ms", "1.9 s". */
export function duration(seconds) {
  if (!Number.isFinite(seconds)) return "—";
  return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(1)} s`;
}

/** A table with a caption, column headers and rows of cells (strings or nodes). */
export function table(caption, headers, rows, className) {
  const out = el("table", undefined, className);
  out.append(el("caption", caption));
  const head = el("tr");
  for (const h of headers) {
    const th = el("th", h);
    th.scope = "col";
    head.append(th);
  }
  out.append(el("thead"));
  out.tHead.append(head);
  const body = el("tbody");
  for (const row of rows) {
    const tr = el("tr", undefined, row.className);
    for (const cell of row.cells) {
      const td = el("td");
      if (cell instanceof Node) td.append(cell);
      else td.textContent = String(cell);
      tr.append(td);
    }
    body.append(tr);
  }
  out.append(body);
  const scroller = el("div", undefined, "table-scroll");
  scroller.append(out);
  return scroller;
}
