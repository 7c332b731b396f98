/**
 * The page's gpurelay credential, shared by the web examples: its app server's first token (and the
 * gateway's URL) from `POST /api/token`, then a fresh token each time the client asks again (after
 * a 401: the last one expired). The API key stays on the app server.
 */

export interface PageCredential {
  baseUrl: string;
  token: () => Promise<string>;
}

async function mint(): Promise<{ token: string; api: string }> {
  const answer = await fetch("/api/token", { method: "POST" });
  if (!answer.ok) throw new Error(`the app server gave no token (${answer.status})`);
  return answer.json();
}

/** `createClient(await pageCredential())`: what a page's client needs. */
export async function pageCredential(): Promise<PageCredential> {
  const first = await mint();
  let unused: string | undefined = first.token;
  return {
    baseUrl: first.api,
    token: async () => {
      const token = unused ?? (await mint()).token;
      unused = undefined;
      return token;
    },
  };
}
