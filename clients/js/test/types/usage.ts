// What an app writes, type-checked against the built declarations (`npm run check:types`): the
// README's browser quick start, and what the types must accept and refuse.
import { createClient, GpurelayError, type Job, type JobEvent, type LiveSession } from "../../dist/index.js";

declare const fileInput: HTMLInputElement;
declare const bar: HTMLProgressElement;

export async function browserQuickStart(): Promise<void> {
  const gpurelay = createClient({
    baseUrl: "https://gpurelay.example",
    token: () => fetch("/api/gpurelay-token").then((r) => r.json()).then((b: { token: string }) => b.token),
  });
  const upload = await gpurelay.uploads.upload(fileInput.files![0]!, {
    onProgress: ({ loaded, total }) => (bar.value = loaded / total),
  });
  const job = await gpurelay.jobs.create({ kind: "lap_compare", inputs: { video: { upload_id: upload.id } } });
  gpurelay.jobs.subscribe(job.id, (event: JobEvent) => console.log(event.type, event.data), {
    onEnd: async () => console.log(await gpurelay.jobs.get(job.id)),
  });
  const done: Job = await gpurelay.jobs.wait(job.id);
  const urls: (string | null)[] = done.artifacts.map((a) => a.url); // an answer's fields are all there (null: expired)
  const error: string | undefined = done.error?.code;
  console.log(urls, error);
  const background: [number, number, number] | null = done.spec.kind === "nerf" ? done.spec.params.background : null;
  console.log(background); // tuples stay tuples

  // @ts-expect-error: pose needs a video input, not a reference only
  await gpurelay.jobs.create({ kind: "pose", inputs: { reference: { upload_id: upload.id } } });
  // @ts-expect-error: no such kind
  await gpurelay.jobs.create({ kind: "render", inputs: {} });

  const session: LiveSession = await gpurelay.sessions.start({ kind: "splat", params: { chunk_every: 50 }, robotId: "arm-1" });
  session.on("result", (e) => console.log(e.data));
  session.on("ack", ({ seq }) => console.log(seq));
  const ack = await session.sendFrame(new Blob([]), { pose: new Array<number>(16).fill(0) });
  console.log(ack.seq);
  // @ts-expect-error: a vlm param on a splat session
  await gpurelay.sessions.start({ kind: "splat", params: { prompt: "hi" } });
  // @ts-expect-error: not an event of a session
  session.on("frame", () => undefined);

  try {
    await gpurelay.jobs.get("job_x");
  } catch (e) {
    if (e instanceof GpurelayError) console.log(e.status, e.errors.map((f) => f.loc.join(".")), e.code);
  }
}
