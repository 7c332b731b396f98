/**
 * The page's gpurelay client: a short-lived token from the app server (`POST /api/token`, which holds
 * the API key), then a fresh one whenever the gateway says the last one expired.
 */
import { createClient } from "@gpurelay/client";

async function mint() {
  const answer = await fetch("/api/token", { method: "POST" });
  if (!answer.ok) throw new Error(`the app server gave no token (${answer.status})`);
  return answer.json();
}

export async function connect() {
  const first = await mint();
  let unused = first.token;
  return createClient({
    baseUrl: first.api,
    token: async () => {
      const token = unused ?? (await mint()).token;
      unused = undefined;
      return token;
    },
  });
}
