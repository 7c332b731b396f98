// New job: upload each chosen file to its pre-signed URL (progress bar), then POST /v1/jobs with
// the params the form holds; the API's problem+json lands next to the fields it names.
import { api, clearProblem, showProblem, uploadFile } from "/static/js/api.js";

const form = document.getElementById("new-job");
const box = document.getElementById("form-problem");

function params() {
  const out = {};
  for (const control of form.querySelectorAll("[name^='param:']")) {
    const name = control.name.slice(6);
    const kind = control.dataset.control;
    if (kind === "checkbox") { out[name] = control.checked; continue; }
    const text = control.value.trim();
    if (text === "") continue; // the schema's default applies
    if (kind === "integer" || kind === "number") out[name] = Number(text);
    else if (kind === "json") out[name] = JSON.parse(text);
    else out[name] = text;
  }
  return out;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearProblem(box, form);
  const button = document.getElementById("submit-job");
  button.disabled = true;
  try {
    const inputs = {};
    for (const input of form.querySelectorAll("input[type=file]")) {
      const name = input.name.slice(6);
      if (!input.files.length) continue;
      const id = await uploadFile(input.files[0], document.getElementById(`up-${name}`), document.getElementById(`pct-${name}`));
      inputs[name] = { upload_id: id };
    }
    let body;
    try { body = { kind: form.elements.kind.value, inputs, params: params() }; }
    catch (e) { showProblem(box, { detail: `A parameter is not valid JSON: ${e.message}` }, form); return; }
    const created = await api("/v1/jobs", { method: "POST", json: body });
    if (!created.ok) { showProblem(box, created.body, form); return; }
    window.location.assign(`/jobs/${created.body.id}`);
  } catch (failure) {
    showProblem(box, failure && failure.body ? failure.body : { detail: String(failure) }, form);
  } finally {
    button.disabled = false;
  }
});
