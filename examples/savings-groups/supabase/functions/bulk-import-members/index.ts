// Imports members from CSV (member_code,full_name,phone,national_id,group_code)
// into the caller's institution, resolving group_code to the group's id.
import { json, preflight } from "../_shared/cors.ts";
import { type ImportResult, parseCsv } from "../_shared/csv.ts";
import { currentStaff, userClient } from "../_shared/supabase-client.ts";

Deno.serve(async (req) => {
  const early = preflight(req);
  if (early) return early;

  const me = await currentStaff(req);
  if (!me || me.role === "auditor") return json({ error: "staff only" }, 403);

  const db = userClient(req);
  const { data: groups, error: groupError } = await db.from("groups").select("id, group_code");
  if (groupError) return json({ error: groupError.message }, 500);
  const groupIds = new Map((groups ?? []).map((g) => [g.group_code, g.id]));

  const rows = parseCsv(await req.text());
  const result: ImportResult = { inserted: 0, errors: [] };
  const valid = [];
  for (const [i, row] of rows.entries()) {
    if (!row.member_code || !row.full_name) {
      result.errors.push({ row: i + 2, error: "member_code and full_name are required" });
      continue;
    }
    if (row.group_code && !groupIds.has(row.group_code)) {
      result.errors.push({ row: i + 2, error: `unknown group_code ${row.group_code}` });
      continue;
    }
    valid.push({
      institution_id: me.institution_id,
      member_code: row.member_code,
      full_name: row.full_name,
      phone: row.phone || null,
      national_id: row.national_id || null,
      group_id: row.group_code ? groupIds.get(row.group_code) : null,
    });
  }

  for (let i = 0; i < valid.length; i += 200) {
    const { error, count } = await db.from("members")
      .upsert(valid.slice(i, i + 200), { onConflict: "institution_id,member_code", count: "exact" });
    if (error) result.errors.push({ row: i + 2, error: error.message });
    else result.inserted += count ?? 0;
  }
  return json(result, result.errors.length ? 207 : 200);
});
