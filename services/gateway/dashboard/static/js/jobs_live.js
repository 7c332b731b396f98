// The jobs list, live: each event of the tenant's feed (the types in data-types) is told to the rows
// as `live:{type}`, on which they reload (hx-trigger). The feed outlives a silent or dropped
// connection (live.js); a refused one comes back on a fresh feed token from /token.
import { freshTokens } from "/static/js/api.js";
import { follow } from "/static/js/live.js";

const live = document.getElementById("jobs-live");
const rows = document.getElementById("job-rows");

async function feedUrl() {
  const url = new URL(live.dataset.events, location.href);
  url.searchParams.set("token", (await freshTokens()).feed_token);
  return url.pathname + url.search;
}

follow({
  url: live.dataset.events,
  refresh: feedUrl,
  types: live.dataset.types.split(","),
  onEvent: (type) => window.htmx.trigger(rows, `live:${type}`),
});
