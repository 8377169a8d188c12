// Receives mobile-money SMS forwarded by the institutions' Android gateways.
// Authenticated by the x-api-key header (INGEST_API_KEY), not a JWT:
// verify_jwt = false in supabase/config.toml.
import { json, preflight } from "../_shared/cors.ts";
import { adminClient } from "../_shared/supabase-client.ts";

interface IngestRequest {
  device_identifier?: string;
  sender_phone?: string;
  sms_text?: string;
  received_at?: string;
  /** Validate key and payload only; store nothing (used by smoke tests). */
  dry_run?: boolean;
}

/** Compares without leaking the position of the first difference. */
function sameSecret(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

Deno.serve(async (req) => {
  const early = preflight(req);
  if (early) return early;
  if (req.method !== "POST") return json({ success: false, error: "use POST" }, 405);

  const expected = Deno.env.get("INGEST_API_KEY");
  if (!expected) return json({ success: false, error: "INGEST_API_KEY is not configured" }, 503);
  const given = req.headers.get("x-api-key") ?? "";
  if (!given || !sameSecret(given, expected)) {
    return json({ success: false, error: "invalid or missing x-api-key" }, 401);
  }

  let body: IngestRequest;
  try {
    body = await req.json();
  } catch {
    return json({ success: false, error: "body must be JSON" }, 400);
  }
  const missing = ["device_identifier", "sender_phone", "sms_text", "received_at"]
    .filter((k) => !body[k as keyof IngestRequest]);
  if (missing.length) return json({ success: false, error: `missing: ${missing.join(", ")}` }, 400);
  if (Number.isNaN(Date.parse(body.received_at!))) {
    return json({ success: false, error: "received_at must be an ISO 8601 time" }, 400);
  }
  if (body.dry_run) return json({ success: true, dry_run: true });

  const db = adminClient();
  const { data: device } = await db
    .from("sms_devices")
    .select("institution_id")
    .eq("device_identifier", body.device_identifier!)
    .maybeSingle();
  if (!device) return json({ success: false, error: "unknown device_identifier" }, 404);

  const { data, error } = await db
    .from("sms_messages")
    .upsert({
      institution_id: device.institution_id,
      device_identifier: body.device_identifier,
      sender_phone: body.sender_phone,
      sms_text: body.sms_text,
      received_at: body.received_at,
    }, { onConflict: "device_identifier,sender_phone,received_at", ignoreDuplicates: true })
    .select("id")
    .maybeSingle();
  if (error) return json({ success: false, error: error.message }, 500);

  await db.from("sms_devices").update({ last_seen_at: new Date().toISOString() })
    .eq("device_identifier", body.device_identifier!);

  if (data?.id) {
    // Parse in the background; the gateway only needs to know the SMS is stored.
    const parse = fetch(`${Deno.env.get("SUPABASE_URL")}/functions/v1/parse-momo-sms`, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${Deno.env.get("SUPABASE_SERVICE_ROLE_KEY")}`,
        "Content-Type": "application/json",
      },
      body: JSON.stringify({ sms_id: data.id }),
    }).catch((e) => console.error("parse-momo-sms", e));
    // @ts-ignore EdgeRuntime exists in the Supabase Edge Runtime only.
    globalThis.EdgeRuntime?.waitUntil?.(parse);
  }
  return json({ success: true, id: data?.id ?? null, duplicate: !data });
});
