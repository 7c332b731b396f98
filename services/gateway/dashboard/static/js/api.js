// The API from the browser: same origin (every URL taken as a path on it), the page's short-lived
// bearer token (refreshed on a 401 from the cookie-backed /token), problem+json shown next to the
// fields it names.

const meta = document.querySelector('meta[name="gpurelay-token"]');
let token = meta ? meta.content : "";

export function currentToken() { return token; }

// Fresh tokens from the cookie-backed /token: the page's API token (kept) and a feed token for the
// tenant's SSE feed; signed out, the sign-in page opens.
export async function freshTokens() {
  const r = await fetch("/token", { credentials: "same-origin", headers: { accept: "application/json" } });
  if (!r.ok) { window.location.assign("/login?next=" + encodeURIComponent(location.pathname)); throw new Error("signed out"); }
  const fresh = await r.json();
  token = fresh.token;
  return fresh;
}

export async function refreshToken() {
  return (await freshTokens()).token;
}

// `path`, or a URL the API gave (a job's `urls.cancel`, a session's `urls.stop`), on this page's origin:
// the gateway's, whatever host name or proxy the page came through.
async function send(path, options) {
  const url = new URL(path, location.href);
  const headers = { accept: "application/json", ...(options.headers || {}), authorization: "Bearer " + token };
  let body = options.body;
  if (options.json !== undefined) { headers["content-type"] = "application/json"; body = JSON.stringify(options.json); }
  return fetch(url.pathname + url.search, { method: options.method || "GET", headers, body, credentials: "omit" });
}

// {ok, status, body}: body is the parsed JSON (a problem document on errors), or null.
export async function api(path, options = {}) {
  let r = await send(path, options);
  if (r.status === 401) { await refreshToken(); r = await send(path, options); }
  const type = r.headers.get("content-type") || "";
  const body = type.includes("json") ? await r.json() : null;
  return { ok: r.ok, status: r.status, body };
}

// The problem's text, and each field error written into the form's [data-loc] slot for its path.
export function showProblem(box, body, form) {
  const problem = body || { detail: "The request failed." };
  if (form) form.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; });
  const unplaced = [];
  for (const e of problem.errors || []) {
    const loc = (e.loc || []).filter((p) => p !== "body").join(".");
    const slot = form && [...form.querySelectorAll("[data-loc]")].find((el) => loc === el.dataset.loc || loc.startsWith(el.dataset.loc + "."));
    if (slot) slot.textContent = e.msg; else unplaced.push(`${loc}: ${e.msg}`);
  }
  box.textContent = [problem.detail || problem.title, ...unplaced].filter(Boolean).join(" — ");
  box.hidden = false;
}

export function clearProblem(box, form) {
  box.hidden = true; box.textContent = "";
  if (form) form.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; });
}

// Upload one file: declare it, PUT it straight to the pre-signed URL (progress shown), complete it.
export async function uploadFile(file, progress, label) {
  const declared = await api("/v1/uploads", { method: "POST", json: { filename: file.name, content_type: file.type || "application/octet-stream", size: file.size } });
  if (!declared.ok) throw declared;
  const signed = declared.body;
  progress.hidden = false; progress.value = 0;
  await new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(signed.method || "PUT", signed.url);
    for (const [k, v] of Object.entries(signed.headers || {})) {
      if (k.toLowerCase() !== "content-length") xhr.setRequestHeader(k, v);
    }
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) show(progress, label, (100 * e.loaded) / e.total); };
    xhr.onload = () => (xhr.status < 300 ? resolve() : reject({ ok: false, status: xhr.status, body: safeJson(xhr.responseText) }));
    xhr.onerror = () => reject({ ok: false, status: 0, body: { detail: "The upload was interrupted." } });
    xhr.send(file);
  });
  show(progress, label, 100);
  const done = await api(`/v1/uploads/${signed.id}/complete`, { method: "POST" });
  if (!done.ok) throw done;
  return signed.id;
}

function show(progress, label, pct) {
  progress.value = pct;
  if (label) label.textContent = `${Math.round(pct)} %`;
}

function safeJson(text) { try { return JSON.parse(text); } catch { return { detail: text || "The upload failed." }; } }

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}
