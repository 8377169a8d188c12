// Turns a mobile-money SMS into { amount, reference, phone }: a regular
// expression first, then the institution's AI parser (OPENAI_API_KEY or GEMINI_API_KEY).

export interface ParsedSms {
  amount: number;
  currency: string;
  reference: string;
  counterparty_phone: string | null;
}

const RECEIVED = /received\s+([\d,]+)\s*RWF\s+from\s+(\+?\d{9,12}).*?Ref(?:erence)?[:.]?\s*(\w+)/i;

export function parseWithRegex(text: string): ParsedSms | null {
  const m = RECEIVED.exec(text);
  if (!m) return null;
  return { amount: Number(m[1].replaceAll(",", "")), currency: "RWF", reference: m[3], counterparty_phone: m[2] };
}

const PROMPT =
  "Extract amount (number), currency, reference and counterparty_phone from this mobile money SMS. " +
  "Answer with one JSON object and nothing else. SMS: ";

export async function parseWithOpenAI(text: string): Promise<ParsedSms | null> {
  const key = Deno.env.get("OPENAI_API_KEY");
  if (!key) throw new Error("OPENAI_API_KEY is not set");
  const response = await fetch("https://api.openai.com/v1/chat/completions", {
    method: "POST",
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: JSON.stringify({
      model: "gpt-4o-mini",
      response_format: { type: "json_object" },
      messages: [{ role: "user", content: PROMPT + text }],
    }),
  });
  if (!response.ok) throw new Error(`OpenAI answered ${response.status}`);
  const body = await response.json();
  return JSON.parse(body.choices[0].message.content) as ParsedSms;
}

export async function parseWithGemini(text: string): Promise<ParsedSms | null> {
  const key = Deno.env.get("GEMINI_API_KEY");
  if (!key) throw new Error("GEMINI_API_KEY is not set");
  const response = await fetch(
    "https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-flash:generateContent",
    {
      method: "POST",
      headers: { "x-goog-api-key": key, "Content-Type": "application/json" },
      body: JSON.stringify({
        contents: [{ parts: [{ text: PROMPT + text }] }],
        generationConfig: { responseMimeType: "application/json" },
      }),
    },
  );
  if (!response.ok) throw new Error(`Gemini answered ${response.status}`);
  const body = await response.json();
  return JSON.parse(body.candidates[0].content.parts[0].text) as ParsedSms;
}
