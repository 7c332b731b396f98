/**
 * Lap Compare in the browser on @gpurelay/client: both laps go straight to storage (with progress),
 * then a `lap_compare` job followed live over SSE; the overlay video and the speed chart at the end.
 * The page holds only a short-lived token that its app server mints (`POST /api/token`).
 */
import { createClient, type Job } from "@gpurelay/client";
import { pageCredential } from "../../shared/page_token";
import { drawSpeeds, type FramePoint } from "./chart";

const element = <T extends Element = HTMLElement>(id: string) => document.getElementById(id) as unknown as T;
const form = element<HTMLFormElement>("compare");
const status = element<HTMLParagraphElement>("status");
const jobBar = element<HTMLProgressElement>("job-progress");

const gpurelay = createClient(await pageCredential());

async function upload(input: HTMLInputElement, bar: HTMLProgressElement) {
  const file = input.files?.[0];
  if (!file) throw new Error(`pick a file for ${input.id}`);
  return gpurelay.uploads.upload(file, { onProgress: ({ loaded, total }) => (bar.value = total ? loaded / total : 0) });
}

async function compare(): Promise<Job> {
  status.textContent = "Uploading…";
  const [lap, reference] = await Promise.all([
    upload(element("lap"), element("lap-upload")),
    upload(element("reference"), element("reference-upload")),
  ]);
  const job = await gpurelay.jobs.create({
    kind: "lap_compare",
    inputs: { video: { upload_id: lap.id }, reference: { upload_id: reference.id } },
  });
  status.textContent = `Job ${job.id} queued`;
  return gpurelay.jobs.wait(job.id, {
    onEvent: ({ type, data }) => {
      if (type === "job.progress") {
        jobBar.value = Number(data.fraction);
        status.textContent = `Analysing: ${data.message ?? ""}`;
      } else if (type === "job.started") {
        status.textContent = "Analysing…";
      }
    },
  });
}

async function show(job: Job): Promise<void> {
  const named = (name: string): Job["artifacts"][number] | undefined => job.artifacts.find((a) => a.name === name && a.url);
  const video = named("overlay.webm") ?? named("overlay.mp4");
  const metrics = named("metrics.json");
  if (!video?.url || !metrics?.url) throw new Error("the job stored no overlay or metrics");
  element<HTMLVideoElement>("overlay").src = video.url;
  const figures = (await (await fetch(metrics.url)).json()) as Record<string, { frames: FramePoint[] }>;
  drawSpeeds(element<SVGSVGElement>("speed-chart"), { lap: figures.video.frames, reference: figures.reference.frames });
  const delta = Number(job.result?.lap_time_delta_s ?? 0);
  element("summary").textContent =
    `${job.result?.frames} frames analysed; your lap is ${Math.abs(delta).toFixed(2)} s ${delta <= 0 ? "ahead of" : "behind"} the reference.`;
  element("downloads").replaceChildren(
    ...job.artifacts.filter((a) => a.url).map((a) => {
      const item = document.createElement("li");
      const link = Object.assign(document.createElement("a"), { href: a.url!, textContent: `${a.name} (${a.size} bytes)` });
      item.append(link);
      return item;
    }),
  );
  element("results").dataset.job = job.id;
  element("results").hidden = false;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  element<HTMLButtonElement>("start").disabled = true;
  compare()
    .then(async (job) => {
      if (job.status !== "succeeded") throw new Error(`the job ${job.status}: ${job.error?.message ?? ""}`);
      jobBar.value = 1;
      await show(job);
      status.textContent = "Done";
    })
    .catch((error: Error) => (status.textContent = `Failed: ${error.message}`))
    .finally(() => (element<HTMLButtonElement>("start").disabled = false));
});
