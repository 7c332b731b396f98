/** The page's gpurelay client, with the token its app server mints (examples/shared/page_token.ts). */
import { createClient } from "@gpurelay/client";
import { pageCredential } from "../../shared/page_token";

export async function connect() {
  return createClient(await pageCredential());
}
