// Webhooks: create (the secret shown once), delete, an endpoint's deliveries and dead letters.
import { api, clearProblem, el, showProblem } from "/static/js/api.js";

const form = document.getElementById("new-webhook");
const box = document.getElementById("wh-problem");
const secretBox = document.getElementById("wh-secret");

async function reloadList() {
  await window.htmx.ajax("GET", "/webhooks/list", { target: "#webhook-rows", swap: "innerHTML" });
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearProblem(box, form);
  const events = form.elements.events.value.split(",").map((s) => s.trim()).filter(Boolean);
  const body = { url: form.elements.url.value.trim(), events, description: form.elements.description.value };
  const r = await api("/v1/webhooks", { method: "POST", json: body });
  if (!r.ok) { showProblem(box, r.body, form); return; }
  document.getElementById("wh-secret-value").textContent = r.body.secret;
  secretBox.hidden = false;
  form.reset();
  await reloadList();
});

document.getElementById("wh-secret-dismiss").addEventListener("click", () => {
  document.getElementById("wh-secret-value").textContent = "";
  secretBox.hidden = true;
});

function when(value) { return value ? value.replace("T", " ").slice(0, 19) : "–"; }

async function showDetail(id) {
  document.getElementById("wh-detail").hidden = false;
  document.getElementById("wh-detail-id").textContent = id;
  document.getElementById("wh-detail").dataset.id = id;
  const rows = document.getElementById("wh-deliveries");
  const d = await api(`/v1/webhooks/${id}/deliveries?limit=50`);
  rows.replaceChildren(...(d.ok ? d.body.data : []).map((x) => el("tr", {},
    el("td", {}, x.event_id), el("td", {}, x.event_type), el("td", {}, x.status), el("td", {}, x.attempts),
    el("td", {}, x.last_status_code ?? x.last_error ?? "–"), el("td", {}, when(x.next_attempt_at)))));
  if (!rows.children.length) rows.append(el("tr", {}, el("td", { colspan: "6" }, d.ok ? "No deliveries yet." : "Deliveries are not available here.")));
  const dead = document.getElementById("wh-dead");
  const l = await api(`/v1/webhooks/${id}/dead-letters?limit=50`);
  dead.replaceChildren(...(l.ok ? l.body.data : []).map((x) => el("tr", {},
    el("td", {}, x.id), el("td", {}, x.event_type), el("td", {}, x.attempts), el("td", {}, x.last_error ?? x.last_status ?? "–"),
    el("td", {}, when(x.dead_lettered_at)))));
  if (!dead.children.length) dead.append(el("tr", {}, el("td", { colspan: "5" }, "No dead letters.")));
}

document.getElementById("webhook-rows").addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const id = button.dataset.id;
  if (button.dataset.action === "deliveries") await showDetail(id);
  if (button.dataset.action === "delete" && window.confirm(`Delete endpoint ${id}?`)) {
    const r = await api(`/v1/webhooks/${id}`, { method: "DELETE" });
    if (!r.ok) showProblem(box, r.body, null);
    await reloadList();
  }
});

document.getElementById("wh-redrive").addEventListener("click", async () => {
  const id = document.getElementById("wh-detail").dataset.id;
  const r = await api(`/v1/webhooks/${id}/dead-letters/redrive`, { method: "POST", json: { all: true } });
  document.getElementById("wh-redrive-note").textContent = r.ok ? `${r.body.redriven.length} redriven.` : (r.body && r.body.detail) || "Refused.";
  await showDetail(id);
});
