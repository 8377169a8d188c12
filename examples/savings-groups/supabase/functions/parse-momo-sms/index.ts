// Parses stored SMS into ledger transactions. Called by sms-ingest for one SMS
// ({ sms_id }) or by a schedule for every pending SMS ({}).
import { json, preflight } from "../_shared/cors.ts";
import { adminClient } from "../_shared/supabase-client.ts";
import { type ParsedSms, parseWithGemini, parseWithOpenAI, parseWithRegex } from "./parsers.ts";

Deno.serve(async (req) => {
  const early = preflight(req);
  if (early) return early;

  const { sms_id } = await req.json().catch(() => ({}));
  const db = adminClient();
  let query = db.from("sms_messages")
    .select("id, institution_id, sms_text, received_at, institution_settings:institution_id(sms_parser)")
    .eq("parse_status", "pending")
    .order("created_at")
    .limit(50);
  if (sms_id) query = query.eq("id", sms_id);
  const { data: pending, error } = await query;
  if (error) return json({ error: error.message }, 500);

  let parsedCount = 0;
  for (const sms of pending ?? []) {
    try {
      // deno-lint-ignore no-explicit-any
      const parser = (sms as any).institution_settings?.sms_parser ?? "openai";
      let parsed: ParsedSms | null = parseWithRegex(sms.sms_text);
      if (!parsed && parser === "openai") parsed = await parseWithOpenAI(sms.sms_text);
      if (!parsed && parser === "gemini") parsed = await parseWithGemini(sms.sms_text);
      if (!parsed) throw new Error("Unrecognised message format");

      const { data: member } = await db.from("members")
        .select("id, group_id")
        .eq("institution_id", sms.institution_id)
        .eq("phone", parsed.counterparty_phone ?? "")
        .maybeSingle();

      const { data: tx, error: txError } = await db.from("transactions").insert({
        institution_id: sms.institution_id,
        member_id: member?.id ?? null, // unmatched: left for reconciliation
        group_id: member?.group_id ?? null,
        type: "deposit",
        amount: parsed.amount,
        currency: parsed.currency || "RWF",
        channel: "momo",
        reference: parsed.reference,
        occurred_at: sms.received_at,
      }).select("id").single();
      if (txError) throw new Error(txError.message);

      await db.from("sms_messages")
        .update({ parse_status: "parsed", parsed, transaction_id: tx.id })
        .eq("id", sms.id);
      parsedCount++;
    } catch (e) {
      await db.from("sms_messages").update({ parse_status: "failed", parse_error: String(e) }).eq("id", sms.id);
    }
  }
  return json({ pending: (pending ?? []).length, parsed: parsedCount });
});
