// Google Drive helpers used by google-drive-upload.

const DRIVE = "https://www.googleapis.com/drive/v3";
const UPLOAD = "https://www.googleapis.com/upload/drive/v3/files?uploadType=multipart&fields=id,webViewLink";

async function findFolder(token: string, name: string, parent: string): Promise<string | null> {
  const q = `name = '${name.replaceAll("'", "\\'")}' and mimeType = 'application/vnd.google-apps.folder' and '${parent}' in parents and trashed = false`;
  const response = await fetch(`${DRIVE}/files?q=${encodeURIComponent(q)}&fields=files(id)`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  const body = await response.json();
  return body.files?.[0]?.id ?? null;
}

/** Resolves "MyDrive/Invoice/2025" to a folder id, creating missing folders. */
export async function resolveFolderPath(token: string, path: string): Promise<string> {
  let parent = "root";
  for (const part of path.split("/").filter((p) => p && p !== "MyDrive")) {
    let id = await findFolder(token, part, parent);
    if (!id) {
      const response = await fetch(`${DRIVE}/files?fields=id`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ name: part, mimeType: "application/vnd.google-apps.folder", parents: [parent] }),
      });
      id = (await response.json()).id as string;
    }
    parent = id;
  }
  return parent;
}

/** Uploads bytes into a folder; returns the file id and its link. */
export async function uploadFile(
  token: string,
  folderId: string,
  fileName: string,
  mimeType: string,
  bytes: Uint8Array,
): Promise<{ id: string; webViewLink: string }> {
  const form = new FormData();
  form.append("metadata", new Blob([JSON.stringify({ name: fileName, parents: [folderId] })], { type: "application/json" }));
  form.append("file", new Blob([bytes], { type: mimeType }));
  const response = await fetch(UPLOAD, { method: "POST", headers: { Authorization: `Bearer ${token}` }, body: form });
  if (!response.ok) throw new Error(`Drive upload failed: ${response.status} ${await response.text()}`);
  return await response.json();
}
