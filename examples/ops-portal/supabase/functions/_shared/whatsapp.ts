import type { SupabaseClient } from "@supabase/supabase-js";
import { readConfig } from "./supabase-client.ts";

export interface WhatsAppSettings {
  enabled: boolean;
  apiUrl: string;
  apiKey: string;
}

/** WhatsApp settings live in the database (invoice_configurations), per environment. */
export async function whatsappSettings(client: SupabaseClient): Promise<WhatsAppSettings> {
  const cfg = await readConfig(client, ["whatsapp_enabled", "whatsapp_api_url", "whatsapp_api_key"]);
  return {
    enabled: cfg.whatsapp_enabled === "true",
    apiUrl: cfg.whatsapp_api_url || "https://api.360messenger.com",
    apiKey: cfg.whatsapp_api_key ?? "",
  };
}

/** Sends one text message through 360Messenger; returns the provider's message id. */
export async function sendThrough360Messenger(
  settings: WhatsAppSettings,
  phoneNumber: string,
  text: string,
): Promise<string> {
  const response = await fetch(`${settings.apiUrl}/v2/sendMessage`, {
    method: "POST",
    headers: {
      "Authorization": `Bearer ${settings.apiKey}`,
      "Content-Type": "application/json",
    },
    body: JSON.stringify({ phonenumber: phoneNumber.replace(/^\+/, ""), text }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok || body.success === false) {
    throw new Error(`360Messenger answered ${response.status}: ${body.error ?? response.statusText}`);
  }
  return String(body.data?.id ?? body.id ?? "");
}
