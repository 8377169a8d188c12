// TEST ONLY: creates a confirmed user with a fixed password, no invite, no checks.
// Never deploy to production: cutover.toml lists it in [functions] exclude.
import { json } from "../_shared/cors.ts";
import { adminClient } from "../_shared/supabase-client.ts";

Deno.serve(async (req) => {
  const { email, role = "staff" } = await req.json();
  const admin = adminClient();
  const { data, error } = await admin.auth.admin.createUser({
    email,
    password: "test-password-123",
    email_confirm: true,
  });
  if (error) return json({ error: error.message }, 400);
  await admin.from("user_management").insert({ user_id: data.user.id, email, role });
  return json({ user_id: data.user.id });
});
