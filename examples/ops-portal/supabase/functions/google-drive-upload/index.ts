// Uploads a generated invoice (or any file) to Google Drive.
// Gets its access token from the google-drive-token function of the same project.
import { decodeBase64 } from "@std/encoding/base64";
import { json, preflight } from "../_shared/cors.ts";
import { adminClient, readConfig } from "../_shared/supabase-client.ts";
import { resolveFolderPath, uploadFile } from "./drive.ts";

interface UploadRequest {
  fileName: string;
  mimeType?: string;
  contentBase64: string;
  folderPath?: string;
  folderId?: string;
}

Deno.serve(async (req) => {
  const early = preflight(req);
  if (early) return early;

  const payload: UploadRequest = await req.json();
  if (!payload.fileName || !payload.contentBase64) {
    return json({ error: "fileName and contentBase64 are required" }, 400);
  }

  const tokenResponse = await fetch(`${Deno.env.get("SUPABASE_URL")}/functions/v1/google-drive-token`, {
    method: "POST",
    headers: { Authorization: `Bearer ${Deno.env.get("SUPABASE_ANON_KEY")}` },
  });
  if (!tokenResponse.ok) return json({ error: "cannot get a Google Drive token" }, 502);
  const { accessToken } = await tokenResponse.json();

  let folderId = payload.folderId;
  if (!folderId) {
    const cfg = await readConfig(adminClient(), ["invoice_folder_path"]);
    folderId = await resolveFolderPath(accessToken, payload.folderPath ?? cfg.invoice_folder_path ?? "MyDrive/Invoice");
  }

  const file = await uploadFile(
    accessToken,
    folderId,
    payload.fileName,
    payload.mimeType ?? "application/pdf",
    decodeBase64(payload.contentBase64),
  );
  return json({ fileId: file.id, url: file.webViewLink });
});
