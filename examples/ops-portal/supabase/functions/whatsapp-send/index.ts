// Sends one WhatsApp message (invoice, payment reminder or manual) and logs it.
// verify_jwt = false (supabase/config.toml): also called by pg_cron jobs.
import { json, preflight } from "../_shared/cors.ts";
import { adminClient } from "../_shared/supabase-client.ts";
import { sendThrough360Messenger, whatsappSettings } from "../_shared/whatsapp.ts";

interface SendRequest {
  phone_number?: string;
  message?: string;
  message_type?: "invoice" | "payment_reminder" | "manual";
  customer_id?: number;
  invoice_id?: string;
  /** Check configuration and payload only; send nothing, log nothing. */
  dry_run?: boolean;
}

Deno.serve(async (req) => {
  const early = preflight(req);
  if (early) return early;

  let payload: SendRequest;
  try {
    payload = await req.json();
  } catch {
    return json({ error: "body must be JSON" }, 400);
  }
  if (!payload.phone_number || !payload.message) {
    return json({ error: "phone_number and message are required" }, 400);
  }

  try {
    const db = adminClient();
    const settings = await whatsappSettings(db);
    if (!settings.enabled) {
      // Disabled is a normal state (e.g. the source after cutover), not an error.
      return json({ sent: false, reason: "whatsapp_disabled" });
    }
    if (payload.dry_run) {
      return json({ sent: false, reason: "dry_run", api_url: settings.apiUrl });
    }

    const log = {
      customer_id: payload.customer_id ?? null,
      invoice_id: payload.invoice_id ?? null,
      message_type: payload.message_type ?? "manual",
      phone_number: payload.phone_number,
      message_content: payload.message,
    };
    try {
      const id = await sendThrough360Messenger(settings, payload.phone_number, payload.message);
      await db.from("whatsapp_message_logs").insert({
        ...log,
        status: "sent",
        provider_message_id: id,
        sent_at: new Date().toISOString(),
      });
      return json({ sent: true, provider_message_id: id });
    } catch (e) {
      await db.from("whatsapp_message_logs").insert({ ...log, status: "failed", error_message: String(e) });
      return json({ sent: false, reason: "provider_error", error: String(e) }, 502);
    }
  } catch (e) {
    console.error("whatsapp-send failed", e);
    return json({ error: "internal error" }, 500);
  }
});
