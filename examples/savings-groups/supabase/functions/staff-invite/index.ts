// An institution admin invites a colleague; the new staff row gets the admin's institution.
import { json, preflight } from "../_shared/cors.ts";
import { adminClient, currentStaff } from "../_shared/supabase-client.ts";

Deno.serve(async (req) => {
  const early = preflight(req);
  if (early) return early;

  const me = await currentStaff(req);
  if (!me || me.role !== "admin") return json({ error: "only institution admins can invite staff" }, 403);

  const { email, full_name, role = "staff" } = await req.json();
  if (!email || !full_name) return json({ error: "email and full_name are required" }, 400);
  if (!["admin", "staff", "auditor"].includes(role)) return json({ error: "role must be admin, staff or auditor" }, 400);

  const admin = adminClient();
  const { data, error } = await admin.auth.admin.inviteUserByEmail(email, { data: { full_name } });
  if (error) return json({ error: error.message }, 400);

  const { error: insertError } = await admin.from("staff").insert({
    user_id: data.user.id,
    institution_id: me.institution_id,
    full_name,
    email,
    role,
    invited_by: me.user_id,
    invited_at: new Date().toISOString(),
  });
  if (insertError) return json({ error: insertError.message }, 500);
  return json({ user_id: data.user.id, institution_id: me.institution_id, role }, 201);
});
