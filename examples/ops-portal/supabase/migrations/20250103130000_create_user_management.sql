-- Who may use the portal, and as what. One row per auth user.
-- role: 'manager' sees and edits everything; 'staff' works on the rows they created.

create table public.user_management (
  user_id uuid primary key references auth.users (id) on delete cascade,
  email text not null,
  full_name text,
  role text not null default 'staff' check (role in ('manager', 'staff')),
  is_active boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table public.user_management is 'Portal users and their role (manager | staff).';

-- Shared trigger function: keeps updated_at current on every UPDATE, unless
-- the statement sets updated_at itself.
create or replace function public.set_updated_at()
returns trigger
language plpgsql
as $$
begin
  if new.updated_at is not distinct from old.updated_at then
    new.updated_at := now();
  end if;
  return new;
end;
$$;

create trigger user_management_set_updated_at
  before update on public.user_management
  for each row execute function public.set_updated_at();

-- Role helpers used by every policy. SECURITY DEFINER so that policies on
-- user_management itself do not recurse; search_path pinned as the Supabase
-- linter asks.
create or replace function public.current_user_role()
returns text
language sql
stable
security definer
set search_path = public
as $$
  select um.role
  from public.user_management um
  where um.user_id = auth.uid() and um.is_active
$$;

create or replace function public.is_manager()
returns boolean
language sql
stable
security definer
set search_path = public
as $$
  select coalesce(public.current_user_role() = 'manager', false)
$$;
