/*
 * HTTP for the search page: JSON calls with readable errors, and the one place
 * image URLs are made (thumbnails, full images, URL previews), so a change in
 * how images are authorised (signed URLs, a cookie) is made here only.
 */

const THUMB_SIZES = [160, 320];

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/** The API key typed under Connection (empty when none). */
function apiKey() {
  const input = document.getElementById("api-key-input");
  return input ? input.value.trim() : "";
}

function headers(hasBody) {
  const out = { Accept: "application/json" };
  if (hasBody) out["Content-Type"] = "application/json";
  const key = apiKey();
  if (key) out["X-API-Key"] = key;
  return out;
}

const UNREACHABLE =
  "The search server cannot be reached. Check that `imagescope serve` is running, then retry.";

async function send(path, { method = "GET", body, signal } = {}) {
  try {
    return await fetch(path, {
      method,
      headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(UNREACHABLE, 0);
  }
}

async function failure(response) {
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  return new ApiError(describeError(response.status, data, text), response.status);
}

/** A JSON API call; throws ApiError with a sentence that says what to do. */
export async function api(path, options = {}) {
  const response = await send(path, options);
  if (!response.ok) throw await failure(response);
  const text = await response.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    throw new ApiError(`The server answered something that is not JSON: ${text.slice(0, 200)}`, 502);
  }
}

/** A binary API call (an image); throws ApiError with the server's reason. */
export async function apiBlob(path, options = {}) {
  const response = await send(path, options);
  if (!response.ok) throw await failure(response);
  return response.blob();
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

// ------------------------------------------------------------------ image URLs

// With API keys on, an <img> cannot send X-API-Key: POST v1/image-token gives a
// short-lived token (also set as a cookie for v1/images), added to image URLs.
let imageToken = null; // {token, expires_at, key}
const TOKEN_MARGIN_MS = 60_000;

/** Gets an image token for the current API key when there is one and none is fresh. */
export async function refreshImageToken() {
  const key = apiKey();
  if (!key) {
    imageToken = null;
    return;
  }
  const fresh = imageToken && imageToken.key === key;
  if (fresh && imageToken.expires_at * 1000 - Date.now() > TOKEN_MARGIN_MS) return;
  try {
    imageToken = { ...(await api("v1/image-token", { method: "POST" })), key };
  } catch {
    imageToken = null; // the server has no tokens (or refuses the key): images say so
  }
}

function withToken(url) {
  if (!imageToken) return url;
  const join = url.includes("?") ? "&" : "?";
  return `${url}${join}token=${encodeURIComponent(imageToken.token)}`;
}

/** Relative URL of a catalog thumbnail: every thumbnail on the page comes from here. */
export function thumbSrc(id, size) {
  return withToken(`v1/images/${encodeURIComponent(id)}/thumbnail?size=${size}`);
}

/** Relative URL of a full catalog image. */
export function imageSrc(id) {
  return withToken(`v1/images/${encodeURIComponent(id)}`);
}

/** The catalog id in a URL of this page's own image endpoints, or null. */
export function catalogIdOf(url) {
  let parsed;
  try {
    parsed = new URL(url, document.baseURI);
  } catch {
    return null;
  }
  if (parsed.origin !== window.location.origin) return null;
  const match = parsed.pathname.match(/\/v1\/images\/([^/]+)(?:\/thumbnail)?$/);
  return match ? decodeURIComponent(match[1]) : null;
}

/** Points ``img`` at a catalog thumbnail (with a larger one for dense screens). */
export function setThumb(img, id, alt) {
  img.src = thumbSrc(id, THUMB_SIZES[0]);
  img.srcset = THUMB_SIZES.map((s) => `${thumbSrc(id, s)} ${s}w`).join(", ");
  img.sizes = "(max-width: 40rem) 45vw, 12rem";
  img.alt = alt;
}

/** A preview of an image URL fetched by the server's guarded fetcher, as a blob URL. */
export async function urlPreview(url, size = 160) {
  const params = new URLSearchParams({ url, size: String(size) });
  const blob = await apiBlob(`v1/reference/preview?${params}`);
  return URL.createObjectURL(blob);
}
