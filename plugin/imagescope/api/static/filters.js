/*
 * Metadata filters: one control per catalog field (check boxes for listed
 * values, a range for numbers, yes/no for booleans, free text otherwise).
 * Each control gives its filter as the API wants it (typed) and as URL strings.
 */
import { el } from "./dom.js";

const MAX_CHECKBOX_VALUES = 24;

const controls = () => [...document.querySelectorAll("[data-filter-field]")];
const q = (root, selector) => root.querySelector(selector);

function idFor(field, suffix) {
  return `filter-${field}-${suffix}`.replace(/[^A-Za-z0-9_-]/g, "_");
}

function booleanControl(box, field) {
  box.dataset.filterKind = "boolean";
  const select = el("select");
  select.setAttribute("aria-label", field.name);
  for (const [value, label] of [["", "any"], ["true", "yes"], ["false", "no"]]) {
    const option = el("option", label);
    option.value = value;
    select.append(option);
  }
  box.append(select);
}

function valuesControl(box, field) {
  box.dataset.filterKind = "values";
  field.values.forEach((value, i) => {
    const label = el("label", undefined, "check");
    const input = el("input");
    input.type = "checkbox";
    input.dataset.value = JSON.stringify(value);
    input.id = idFor(field.name, i);
    label.append(input, document.createTextNode(` ${value}`));
    box.append(label);
  });
}

function rangeControl(box, field) {
  box.dataset.filterKind = "range";
  for (const [bound, label] of [["gte", "from"], ["lte", "to"]]) {
    const input = el("input");
    input.type = "number";
    input.dataset.bound = bound;
    input.id = idFor(field.name, bound);
    input.placeholder = String(bound === "gte" ? field.min ?? "" : field.max ?? "");
    const text = el("label", label);
    text.htmlFor = input.id;
    box.append(text, input);
  }
}

/** The control for one catalog field. */
export function filterControl(field) {
  const box = el("fieldset", undefined, "filter");
  box.dataset.filterField = field.name;
  box.append(el("legend", field.name));
  const values = field.values || [];
  if (field.kind === "boolean") booleanControl(box, field);
  else if (values.length && values.length <= MAX_CHECKBOX_VALUES) valuesControl(box, field);
  else if (field.kind === "number") rangeControl(box, field);
  else {
    box.dataset.filterKind = "exact";
    const input = el("input");
    input.type = "text";
    input.id = idFor(field.name, "value");
    input.setAttribute("aria-label", `${field.name} equals`);
    box.append(input);
  }
  return box;
}

/** One control's filter: [typed value for the API, URL strings], or null when unset. */
function readControl(control) {
  const kind = control.dataset.filterKind;
  if (kind === "values") {
    const picked = [...control.querySelectorAll("input:checked")].map((i) => i.dataset.value);
    if (!picked.length) return null;
    const typed = picked.map((v) => JSON.parse(v));
    return [typed.length === 1 ? typed[0] : typed, typed.map(String)];
  }
  if (kind === "range") {
    const low = q(control, "input[data-bound=gte]").value;
    const high = q(control, "input[data-bound=lte]").value;
    if (low === "" && high === "") return null;
    const range = {};
    if (low !== "") range.gte = Number(low);
    if (high !== "") range.lte = Number(high);
    return [range, [`${low}..${high}`]];
  }
  const value = kind === "boolean" ? q(control, "select").value : q(control, "input").value.trim();
  if (value === "") return null;
  return [kind === "boolean" ? value === "true" : value, [value]];
}

/** The filters for the API: field -> value, list of values or range. */
export function selectedFilters() {
  const out = {};
  for (const control of controls()) {
    const read = readControl(control);
    if (read) out[control.dataset.filterField] = read[0];
  }
  return out;
}

/** The filters as URL pairs [field, string]. */
export function filterParams() {
  const out = [];
  for (const control of controls()) {
    const read = readControl(control);
    if (read) for (const text of read[1]) out.push([control.dataset.filterField, text]);
  }
  return out;
}

function clearControl(control) {
  for (const input of control.querySelectorAll("input")) {
    if (input.type === "checkbox") input.checked = false;
    else input.value = "";
  }
  for (const select of control.querySelectorAll("select")) select.value = "";
}

/** Unsets every filter. */
export function clearFilters() {
  controls().forEach(clearControl);
}

/** Unsets one field's filter. */
export function removeFilter(name) {
  const control = controls().find((c) => c.dataset.filterField === name);
  if (control) clearControl(control);
}

function setControl(control, texts) {
  const kind = control.dataset.filterKind;
  if (kind === "values") {
    for (const input of control.querySelectorAll("input")) {
      input.checked = texts.includes(String(JSON.parse(input.dataset.value)));
    }
  } else if (kind === "range") {
    const [low, high] = (texts[0] || "").split("..");
    q(control, "input[data-bound=gte]").value = low || "";
    q(control, "input[data-bound=lte]").value = high || "";
  } else if (kind === "boolean") {
    q(control, "select").value = ["true", "false"].includes(texts[0]) ? texts[0] : "";
  } else {
    q(control, "input").value = texts[0] || "";
  }
}

/** Sets the controls from URL pairs; returns the fields this catalog does not have. */
export function applyFilterParams(pairs) {
  clearFilters();
  const byField = new Map();
  for (const [name, text] of pairs) byField.set(name, [...(byField.get(name) || []), text]);
  const unknown = [];
  for (const [name, texts] of byField) {
    const control = controls().find((c) => c.dataset.filterField === name);
    if (control) setControl(control, texts);
    else unknown.push(name);
  }
  return unknown;
}

/** Each set filter in words: [[field, "colour = red or blue"], ...]. */
export function describeFilters() {
  const out = [];
  for (const control of controls()) {
    const read = readControl(control);
    if (!read) continue;
    const name = control.dataset.filterField;
    const value = read[0];
    let words;
    if (Array.isArray(value)) words = value.join(" or ");
    else if (value && typeof value === "object") {
      words = [value.gte !== undefined ? `from ${value.gte}` : "", value.lte !== undefined ? `to ${value.lte}` : ""]
        .filter(Boolean)
        .join(" ");
    } else words = String(value);
    out.push([name, `${name} = ${words}`]);
  }
  return out;
}
