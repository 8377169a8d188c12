alter table public.customers add column whatsapp_number text;

comment on column public.customers.whatsapp_number is 'E.164 number for WhatsApp; falls back to phone when null.';

update public.customers set whatsapp_number = phone where whatsapp_number is null and phone like '+%';
