/*
 * The reference image of a composed query: from the catalog (picker or a
 * result), an upload, an image URL (previewed through the server's guarded
 * fetcher), a file or link dropped on the page, or an image pasted from the
 * clipboard. Files are checked here (type, size, decodable) before upload.
 */
import { catalogIdOf, setThumb, urlPreview } from "./api.js";
import { $, el } from "./dom.js";

const DEFAULT_LIMITS = {
  max_upload_bytes: 18 * 1024 * 1024,
  image_types: ["image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "image/tiff", "image/avif"],
};
/** Types Chromium cannot decode itself; the server's decoder is trusted with them. */
const NOT_DECODED_HERE = ["image/tiff"];

let limits = DEFAULT_LIMITS;
let reference = null; // {id, caption} | {url, previewUrl} | {data, name, previewUrl}
let hooks = { changed: () => {}, error: () => {}, clearError: () => {} };

export const currentReference = () => reference;

/** The reference as the API wants it, or null. */
export function referenceForQuery() {
  if (!reference) return null;
  if (reference.id) return { id: reference.id };
  if (reference.url) return { url: reference.url };
  return { data: reference.data };
}

/** The reference as the URL keeps it. */
export function referenceForUrl() {
  if (!reference) return null;
  if (reference.id) return { id: reference.id };
  if (reference.url) return { url: reference.url };
  return { upload: reference.name };
}

/** Uses the server's upload limits (from GET v1/page-options). */
export function setLimits(options) {
  limits = { ...DEFAULT_LIMITS, ...(options || {}) };
}

function render() {
  const box = $("#reference-preview");
  $("#clear-reference").hidden = !reference;
  if (!reference) {
    box.replaceChildren(el("p", "No reference image yet.", "muted"));
    return;
  }
  const img = document.createElement("img");
  img.className = "reference-image";
  img.width = 96;
  img.height = 96;
  let label;
  if (reference.id) {
    setThumb(img, reference.id, reference.caption || `catalog image ${reference.id}`);
    label = `Catalog image ${reference.id}${reference.caption ? `: ${reference.caption}` : ""}`;
  } else if (reference.url) {
    img.src = reference.previewUrl;
    img.alt = `image from ${reference.url}`;
    label = `From URL: ${reference.url}`;
  } else {
    img.src = reference.previewUrl;
    img.alt = `uploaded image ${reference.name}`;
    label = `Uploaded: ${reference.name}`;
  }
  box.replaceChildren(img, el("p", label, "reference-label"));
}

/** Sets (or with null clears) the reference. */
export function setReference(ref) {
  if (reference && reference.previewUrl) URL.revokeObjectURL(reference.previewUrl);
  reference = ref;
  $("#upload-input").value = "";
  render();
  hooks.changed(reference);
}

// ------------------------------------------------------------------ files

function megabytes(bytes) {
  return `${(bytes / 1048576).toFixed(1)} MB`;
}

function typeNames() {
  return limits.image_types.map((t) => t.replace("image/", "").toUpperCase()).join(", ");
}

/** Why ``file`` cannot be a reference, or null when it can. */
export async function fileProblem(file) {
  if (!limits.image_types.includes(file.type)) {
    const what = file.type ? `a ${file.type} file` : "of an unknown type";
    return `${file.name} is ${what}, not an image. Choose a ${typeNames()} image.`;
  }
  if (file.size > limits.max_upload_bytes) {
    return (
      `${file.name} is ${megabytes(file.size)}; the server takes images up to ` +
      `${megabytes(limits.max_upload_bytes)}. Choose a smaller file.`
    );
  }
  if (file.size === 0) return `${file.name} is empty. Choose an image file.`;
  if (NOT_DECODED_HERE.includes(file.type) || typeof createImageBitmap !== "function") return null;
  try {
    (await createImageBitmap(file)).close();
  } catch {
    return `${file.name} is named like an image but cannot be read as one. Choose another file.`;
  }
  return null;
}

function readBase64(file) {
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

/** Takes an image file as the reference after checking it; returns whether it did. */
export async function takeFile(file) {
  hooks.clearError();
  const problem = await fileProblem(file);
  if (problem) {
    $("#upload-input").value = "";
    hooks.error(problem);
    return false;
  }
  const data = await readBase64(file);
  setReference({ data, name: file.name || "pasted image", previewUrl: URL.createObjectURL(file) });
  return true;
}

// ------------------------------------------------------------------ URLs

function httpUrl(text) {
  try {
    const url = new URL(text.trim());
    return ["http:", "https:"].includes(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

/** Takes an image URL (or a link to a catalog image) as the reference; returns whether it did. */
export async function takeUrl(text) {
  hooks.clearError();
  const id = catalogIdOf(text.trim());
  if (id) {
    setReference({ id, caption: "" });
    return true;
  }
  const url = httpUrl(text);
  if (!url) {
    hooks.error(`“${text.trim()}” is not an http(s) link to an image. Paste a full URL.`);
    return false;
  }
  const status = $("#reference-status");
  status.textContent = "Fetching the image…";
  try {
    const previewUrl = await urlPreview(url);
    setReference({ url, previewUrl });
    $("#ref-url-input").value = "";
    status.textContent = "";
    return true;
  } catch (err) {
    status.textContent = "";
    hooks.error(`That image URL cannot be used. ${err.message}`);
    return false;
  }
}

// ------------------------------------------------------------------ drop and paste

function droppedUrl(transfer) {
  const list = transfer.getData("text/uri-list") || transfer.getData("text/plain") || "";
  return list.split(/\r?\n/).find((line) => line && !line.startsWith("#")) || "";
}

/** Takes what was dropped or pasted; returns whether it was a reference. */
async function takeTransfer(transfer) {
  const file = [...(transfer.files || [])][0];
  if (file) return takeFile(file);
  const url = droppedUrl(transfer);
  if (url) return takeUrl(url);
  return false;
}

const editingText = (node) =>
  node instanceof HTMLElement &&
  (node.isContentEditable || ["TEXTAREA", "INPUT"].includes(node.tagName)) &&
  !["checkbox", "radio", "file", "button", "submit"].includes(node.type);

function wireDropAndPaste(beforeTake) {
  const carriesSomething = (e) =>
    [...e.dataTransfer.types].some((t) => ["Files", "text/uri-list"].includes(t));
  document.addEventListener("dragover", (event) => {
    if (!carriesSomething(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    document.body.classList.add("dragging");
  });
  document.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) document.body.classList.remove("dragging");
  });
  document.addEventListener("drop", (event) => {
    document.body.classList.remove("dragging");
    if (!carriesSomething(event)) return;
    event.preventDefault();
    beforeTake();
    takeTransfer(event.dataTransfer);
  });
  document.addEventListener("paste", (event) => {
    const data = event.clipboardData;
    if (!data) return;
    const hasFile = [...data.files].length > 0;
    // Text pasted into a text box is ordinary typing; an image is always a reference.
    if (!hasFile && (editingText(event.target) || !httpUrl(data.getData("text/plain") || ""))) return;
    event.preventDefault();
    beforeTake();
    takeTransfer(data);
  });
}

/** Wires the reference inputs; ``beforeTake`` runs before a drop or paste is taken. */
export function initReference({ changed, error, clearError, beforeTake }) {
  hooks = { changed, error, clearError };
  $("#upload-input").addEventListener("change", (event) => {
    const file = event.target.files && event.target.files[0];
    if (file) takeFile(file);
  });
  $("#use-ref-url").addEventListener("click", () => takeUrl($("#ref-url-input").value));
  $("#ref-url-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      takeUrl($("#ref-url-input").value);
    }
  });
  $("#clear-reference").addEventListener("click", () => setReference(null));
  wireDropAndPaste(beforeTake);
  render();
}
