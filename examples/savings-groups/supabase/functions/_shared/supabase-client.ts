import { createClient, type SupabaseClient } from "@supabase/supabase-js";

// Provided by the Edge Runtime of each project; never set as secrets.
function env(name: string): string {
  const value = Deno.env.get(name);
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

/** Bypasses RLS: only for trusted callers (API key checked, or admin verified). */
export function adminClient(): SupabaseClient {
  return createClient(env("SUPABASE_URL"), env("SUPABASE_SERVICE_ROLE_KEY"), {
    auth: { persistSession: false, autoRefreshToken: false },
  });
}

/** Acts as the signed-in staff member: RLS scopes everything to their institution. */
export function userClient(req: Request): SupabaseClient {
  return createClient(env("SUPABASE_URL"), env("SUPABASE_ANON_KEY"), {
    global: { headers: { Authorization: req.headers.get("Authorization") ?? "" } },
    auth: { persistSession: false, autoRefreshToken: false },
  });
}

export interface StaffMember {
  user_id: string;
  institution_id: string;
  role: "admin" | "staff" | "auditor";
}

/** The caller's staff row (read under RLS), or null when they are not staff. */
export async function currentStaff(req: Request): Promise<StaffMember | null> {
  const client = userClient(req);
  const { data: { user } } = await client.auth.getUser();
  if (!user) return null;
  const { data } = await client
    .from("staff")
    .select("user_id, institution_id, role")
    .eq("user_id", user.id)
    .eq("is_active", true)
    .maybeSingle();
  return data as StaffMember | null;
}
