// Invites a new portal user (managers only) and sends a welcome email through Resend.
// Secrets: APP_URL, RESEND_API_KEY.
import { json, preflight } from "../_shared/cors.ts";
import { adminClient, userClient } from "../_shared/supabase-client.ts";

interface CreateUserRequest {
  email: string;
  full_name?: string;
  role?: "manager" | "staff";
}

Deno.serve(async (req) => {
  const early = preflight(req);
  if (early) return early;

  // The caller must be an active manager (checked with their own JWT, under RLS).
  const { data: isManager, error: roleError } = await userClient(req).rpc("is_manager");
  if (roleError || isManager !== true) return json({ error: "only managers can create users" }, 403);

  const { email, full_name, role = "staff" }: CreateUserRequest = await req.json();
  if (!email) return json({ error: "email is required" }, 400);

  const admin = adminClient();
  const appUrl = Deno.env.get("APP_URL") ?? "";
  const { data, error } = await admin.auth.admin.inviteUserByEmail(email, {
    data: { full_name },
    redirectTo: `${appUrl}/auth/callback`,
  });
  if (error) return json({ error: error.message }, 400);

  const { error: insertError } = await admin.from("user_management").insert({
    user_id: data.user.id,
    email,
    full_name,
    role,
  });
  if (insertError) return json({ error: insertError.message }, 500);

  const resendKey = Deno.env.get("RESEND_API_KEY");
  if (resendKey) {
    await fetch("https://api.resend.com/emails", {
      method: "POST",
      headers: { Authorization: `Bearer ${resendKey}`, "Content-Type": "application/json" },
      body: JSON.stringify({
        from: Deno.env.get("RESEND_FROM_EMAIL") ?? "Aamodha <no-reply@aamodha.example>",
        to: [email],
        subject: "Welcome to the Aamodha Operations Portal",
        html: `<p>Hello ${full_name ?? ""},</p><p>Sign in at <a href="${appUrl}">${appUrl}</a>.</p>`,
      }),
    });
  }
  return json({ user_id: data.user.id, role }, 201);
});
