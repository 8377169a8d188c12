import { createClient, type SupabaseClient } from "@supabase/supabase-js";

// SUPABASE_URL, SUPABASE_ANON_KEY and SUPABASE_SERVICE_ROLE_KEY are provided
// by the Edge Runtime of each project; they are never set as secrets.
function env(name: string): string {
  const value = Deno.env.get(name);
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

/** A client that bypasses RLS. Use only after checking who is calling. */
export function adminClient(): SupabaseClient {
  return createClient(env("SUPABASE_URL"), env("SUPABASE_SERVICE_ROLE_KEY"), {
    auth: { persistSession: false, autoRefreshToken: false },
  });
}

/** A client acting as the caller (their JWT), so RLS applies. */
export function userClient(req: Request): SupabaseClient {
  return createClient(env("SUPABASE_URL"), env("SUPABASE_ANON_KEY"), {
    global: { headers: { Authorization: req.headers.get("Authorization") ?? "" } },
    auth: { persistSession: false, autoRefreshToken: false },
  });
}

/** Reads invoice_configurations as a key → value map. */
export async function readConfig(client: SupabaseClient, keys: string[]): Promise<Record<string, string>> {
  const { data, error } = await client
    .from("invoice_configurations")
    .select("config_key, config_value")
    .in("config_key", keys);
  if (error) throw new Error(`cannot read invoice_configurations: ${error.message}`);
  return Object.fromEntries((data ?? []).map((row) => [row.config_key, row.config_value ?? ""]));
}
