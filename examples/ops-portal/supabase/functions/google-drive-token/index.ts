// Exchanges the environment's Google refresh token for a short-lived access token.
// Secrets: GOOGLE_REFRESH_TOKEN, GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET.
import { json, preflight } from "../_shared/cors.ts";

Deno.serve(async (req) => {
  const early = preflight(req);
  if (early) return early;

  const refreshToken = Deno.env.get("GOOGLE_REFRESH_TOKEN");
  const clientId = Deno.env.get("GOOGLE_CLIENT_ID");
  const clientSecret = Deno.env.get("GOOGLE_CLIENT_SECRET");
  if (!refreshToken || !clientId || !clientSecret) {
    return json({ error: "Google Drive is not configured: set GOOGLE_REFRESH_TOKEN, GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET" }, 503);
  }

  const response = await fetch("https://oauth2.googleapis.com/token", {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      client_id: clientId,
      client_secret: clientSecret,
      refresh_token: refreshToken,
      grant_type: "refresh_token",
    }),
  });
  const body = await response.json();
  if (!response.ok) {
    return json({ error: body.error_description ?? body.error ?? "token refresh failed" }, 502);
  }
  return json({ accessToken: body.access_token, expiresIn: body.expires_in });
});
