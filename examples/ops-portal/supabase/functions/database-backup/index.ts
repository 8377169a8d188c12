// Exports the business tables as JSON, uploads the file to the backup folder
// on Google Drive and records the outcome in backup_logs.
import { json, preflight } from "../_shared/cors.ts";
import { adminClient, readConfig } from "../_shared/supabase-client.ts";

const TABLES = ["customers", "sales_transactions", "invoices", "invoice_configurations", "whatsapp_templates"];

Deno.serve(async (req) => {
  const early = preflight(req);
  if (early) return early;

  const db = adminClient();
  const { backup_folder_path } = await readConfig(db, ["backup_folder_path"]);
  const startedAt = new Date().toISOString();
  const { data: log } = await db.from("backup_logs")
    .insert({ backup_type: "manual", status: "running", started_at: startedAt })
    .select("id")
    .single();

  try {
    const dump: Record<string, unknown[]> = {};
    for (const table of TABLES) {
      const { data, error } = await db.from(table).select("*");
      if (error) throw new Error(`${table}: ${error.message}`);
      dump[table] = data ?? [];
    }
    const fileName = `backup-${startedAt.slice(0, 10)}.json`;
    const bytes = new TextEncoder().encode(JSON.stringify(dump));
    const upload = await fetch(`${Deno.env.get("SUPABASE_URL")}/functions/v1/google-drive-upload`, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${Deno.env.get("SUPABASE_ANON_KEY")}`,
        "Content-Type": "application/json",
      },
      body: JSON.stringify({
        fileName,
        mimeType: "application/json",
        folderPath: backup_folder_path,
        contentBase64: btoa(String.fromCharCode(...bytes)),
      }),
    });
    if (!upload.ok) throw new Error(`upload failed: ${upload.status}`);
    const { fileId } = await upload.json();
    await db.from("backup_logs").update({
      status: "success",
      file_name: fileName,
      file_size_bytes: bytes.length,
      drive_file_id: fileId,
      completed_at: new Date().toISOString(),
    }).eq("id", log?.id);
    return json({ ok: true, fileName, fileId });
  } catch (e) {
    await db.from("backup_logs").update({
      status: "failed",
      error_message: String(e),
      completed_at: new Date().toISOString(),
    }).eq("id", log?.id);
    return json({ ok: false, error: String(e) }, 500);
  }
});
