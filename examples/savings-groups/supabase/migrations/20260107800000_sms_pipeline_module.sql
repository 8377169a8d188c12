-- Mobile-money SMS pipeline: an Android gateway forwards SMS to the sms-ingest
-- function (x-api-key), parse-momo-sms turns them into transactions.

create table public.sms_devices (
  device_identifier text primary key,
  institution_id uuid not null references public.institutions (id) on delete cascade,
  label text,
  last_seen_at timestamptz
);

create table public.sms_messages (
  id uuid primary key default gen_random_uuid(),
  institution_id uuid not null references public.institutions (id) on delete restrict,
  device_identifier text not null references public.sms_devices (device_identifier),
  sender_phone text not null,
  sms_text text not null,
  received_at timestamptz not null,
  parse_status text not null default 'pending' check (parse_status in ('pending', 'parsed', 'failed', 'ignored')),
  parsed jsonb,
  parse_error text,
  transaction_id bigint references public.transactions (id) on delete set null,
  created_at timestamptz not null default now(),
  unique (device_identifier, sender_phone, received_at)
);

create index idx_sms_messages_pending on public.sms_messages (created_at) where parse_status = 'pending';

alter table public.sms_devices enable row level security;
alter table public.sms_messages enable row level security;

create policy "Institution scope (read)"
  on public.sms_devices for select to authenticated
  using (institution_id = public.current_institution_id());

create policy "Institution scope (read)"
  on public.sms_messages for select to authenticated
  using (institution_id = public.current_institution_id());
