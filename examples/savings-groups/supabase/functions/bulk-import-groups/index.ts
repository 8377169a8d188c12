// Imports groups from CSV (group_code,name,meeting_day,contribution_amount) into
// the caller's institution. Runs as the caller: RLS refuses any other institution.
import { json, preflight } from "../_shared/cors.ts";
import { type ImportResult, parseCsv } from "../_shared/csv.ts";
import { currentStaff, userClient } from "../_shared/supabase-client.ts";

Deno.serve(async (req) => {
  const early = preflight(req);
  if (early) return early;

  const me = await currentStaff(req);
  if (!me || me.role === "auditor") return json({ error: "staff only" }, 403);

  const rows = parseCsv(await req.text());
  const result: ImportResult = { inserted: 0, errors: [] };
  const valid = [];
  for (const [i, row] of rows.entries()) {
    if (!row.group_code || !row.name) {
      result.errors.push({ row: i + 2, error: "group_code and name are required" });
      continue;
    }
    valid.push({
      institution_id: me.institution_id,
      group_code: row.group_code,
      name: row.name,
      meeting_day: row.meeting_day?.toLowerCase() || null,
      contribution_amount: Number(row.contribution_amount || 0),
    });
  }

  const db = userClient(req);
  for (let i = 0; i < valid.length; i += 200) {
    const { error, count } = await db.from("groups")
      .upsert(valid.slice(i, i + 200), { onConflict: "institution_id,group_code", count: "exact" });
    if (error) result.errors.push({ row: i + 2, error: error.message });
    else result.inserted += count ?? 0;
  }
  return json(result, result.errors.length ? 207 : 200);
});
