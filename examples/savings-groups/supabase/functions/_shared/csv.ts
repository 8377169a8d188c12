import { parse } from "@std/csv";

/** Parses CSV text with a header row into objects; trims cells, drops empty rows. */
export function parseCsv(text: string): Record<string, string>[] {
  const rows = parse(text, { skipFirstRow: true, trimLeadingSpace: true }) as Record<string, string>[];
  return rows
    .map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k.trim(), (v ?? "").trim()])))
    .filter((row) => Object.values(row).some((v) => v !== ""));
}

export interface ImportResult {
  inserted: number;
  errors: { row: number; error: string }[];
}
