-- Per-institution settings (Settings page).

create table public.institution_settings (
  institution_id uuid primary key references public.institutions (id) on delete cascade,
  currency text not null default 'RWF',
  momo_sender_ids text[] not null default array['MoMo', 'M-Money'],
  sms_parser text not null default 'openai' check (sms_parser in ('openai', 'gemini', 'regex')),
  reconciliation_tolerance numeric(12, 2) not null default 0,
  updated_at timestamptz not null default now()
);

create or replace function public.current_staff_role()
returns text
language sql
stable
security definer
set search_path = public
as $$
  select s.role from public.staff s where s.user_id = auth.uid() and s.is_active
$$;

alter table public.institution_settings enable row level security;

create policy "Staff read their institution's settings"
  on public.institution_settings for select to authenticated
  using (institution_id = public.current_institution_id());

create policy "Admins change their institution's settings"
  on public.institution_settings for update to authenticated
  using (institution_id = public.current_institution_id() and public.current_staff_role() = 'admin')
  with check (institution_id = public.current_institution_id());
