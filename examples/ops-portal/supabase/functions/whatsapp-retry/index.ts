// Retries failed WhatsApp messages (up to 3 attempts each). Run by pg_cron.
import { json, preflight } from "../_shared/cors.ts";
import { adminClient } from "../_shared/supabase-client.ts";
import { sendThrough360Messenger, whatsappSettings } from "../_shared/whatsapp.ts";

const MAX_RETRIES = 3;

Deno.serve(async (req) => {
  const early = preflight(req);
  if (early) return early;

  const db = adminClient();
  const settings = await whatsappSettings(db);
  if (!settings.enabled) return json({ retried: 0, reason: "whatsapp_disabled" });

  const { data: failed, error } = await db.rpc("whatsapp_messages_to_retry", { p_max_retries: MAX_RETRIES });
  if (error) return json({ error: error.message }, 500);

  let sent = 0;
  for (const message of failed ?? []) {
    try {
      const id = await sendThrough360Messenger(settings, message.phone_number, message.message_content);
      await db.from("whatsapp_message_logs").update({
        status: "sent",
        provider_message_id: id,
        sent_at: new Date().toISOString(),
        retry_count: message.retry_count + 1,
        error_message: null,
      }).eq("id", message.id);
      sent++;
    } catch (e) {
      await db.from("whatsapp_message_logs").update({
        retry_count: message.retry_count + 1,
        error_message: String(e),
      }).eq("id", message.id);
    }
  }
  return json({ retried: (failed ?? []).length, sent });
});
