// A page's SSE stream that outlives a silent or dropped connection. The stream is asked for its
// keep-alive as a `ping` event (`?ping=event`: an EventSource hides the default comment), so a
// connection that has carried neither an event nor a ping for the page's idle time (the
// gpurelay-stream-idle-ms meta, from GPURELAY_DASHBOARD_STREAM_IDLE_S) is taken as dead: a host gone
// without closing left a page waiting for ever. A silent stream is opened again at once on the same
// URL; one the server closed or refused (its token expired, a restart) on a fresh URL from `refresh`,
// after a pause. Either way it resumes with `?after=` the last event's id, and an event seen before
// is not handed on twice. Every URL is taken as a path on this page's origin.

export const BACKOFF_MS = [1000, 2000, 5000, 10000];
const meta = document.querySelector('meta[name="gpurelay-stream-idle-ms"]');
export const IDLE_MS = meta ? Number(meta.content) : 60000;

function onThisOrigin(url, params) {
  const u = new URL(url, location.href);
  for (const [name, value] of Object.entries(params)) if (value !== undefined) u.searchParams.set(name, value);
  return u.pathname + u.search;
}

// Follows `url` (opened first; `refresh()` gives a fresh one after a refusal), calling
// `onEvent(type, data)` for each of `types`; returns a function that stops it.
export function follow({ url, refresh, types, onEvent, idleMs = IDLE_MS }) {
  let current = url;
  let after = null;
  let source = null;
  let idle = null;
  let drops = 0;
  let stopped = false;

  const alive = () => {
    clearTimeout(idle);
    if (idleMs > 0 && !stopped) idle = setTimeout(silent, idleMs);
  };
  const open = () => {
    if (stopped) return;
    source = new EventSource(onThisOrigin(current, { after: after ?? undefined, ping: "event" }));
    for (const type of types) {
      source.addEventListener(type, (e) => {
        alive();
        drops = 0;
        const seq = /^\d+$/.test(e.lastEventId) ? Number(e.lastEventId) : null;
        if (seq !== null && after !== null && seq <= after) return; // handed on before the stream broke
        if (seq !== null) after = seq;
        onEvent(type, e.data);
      });
    }
    source.addEventListener("ping", alive);
    source.onopen = alive;
    source.onerror = dropped;
    alive();
  };
  function silent() {
    source.close();
    open();
  }
  async function dropped() {
    clearTimeout(idle);
    source.close();
    if (stopped) return;
    await new Promise((done) => setTimeout(done, BACKOFF_MS[Math.min(drops, BACKOFF_MS.length - 1)]));
    if (stopped) return;
    drops += 1;
    try { current = (await refresh()) || current; } catch { /* the last URL once more */ }
    open();
  }
  open();
  return () => {
    stopped = true;
    clearTimeout(idle);
    source.close();
  };
}
