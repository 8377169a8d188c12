-- Reconciliation: a mobile-money transaction that arrived by SMS without a
-- member is allocated to one. transactions stays immutable; the allocation is
-- its own row, and every allocation is written to the audit log.

create table public.transaction_allocations (
  transaction_id bigint primary key references public.transactions (id) on delete restrict,
  member_id uuid not null references public.members (id) on delete restrict,
  allocated_by uuid references auth.users (id),
  allocated_at timestamptz not null default now(),
  note text
);

alter table public.transaction_allocations enable row level security;

create policy "Institution scope"
  on public.transaction_allocations for all to authenticated
  using (exists (
    select 1 from public.transactions t
    where t.id = transaction_id and t.institution_id = public.current_institution_id()))
  with check (exists (
    select 1 from public.transactions t
    where t.id = transaction_id and t.institution_id = public.current_institution_id()));

create or replace function public.audit_allocation()
returns trigger
language plpgsql
security definer
set search_path = public
as $$
begin
  insert into public.audit_log (institution_id, actor_id, action, entity_type, entity_id, details, created_at)
  select t.institution_id, new.allocated_by, 'transaction.allocated', 'transaction', new.transaction_id::text,
         jsonb_build_object('member_id', new.member_id, 'note', new.note), new.allocated_at
  from public.transactions t
  where t.id = new.transaction_id;
  return new;
end;
$$;

create trigger transaction_allocations_audit
  after insert on public.transaction_allocations
  for each row execute function public.audit_allocation();

create or replace function public.allocate_transaction(p_transaction_id bigint, p_member_id uuid, p_note text default null)
returns void
language plpgsql
as $$
declare
  v_tx public.transactions;
begin
  select * into v_tx from public.transactions where id = p_transaction_id;
  if not found then
    raise exception 'transaction % not found', p_transaction_id using errcode = 'no_data_found';
  end if;
  if v_tx.member_id is not null then
    raise exception 'transaction % already belongs to member %', p_transaction_id, v_tx.member_id;
  end if;
  if not exists (select 1 from public.members m where m.id = p_member_id and m.institution_id = v_tx.institution_id) then
    raise exception 'member % is not in the institution of transaction %', p_member_id, p_transaction_id;
  end if;
  insert into public.transaction_allocations (transaction_id, member_id, allocated_by, note)
  values (p_transaction_id, p_member_id, auth.uid(), p_note);
end;
$$;

create or replace view public.unallocated_transactions
with (security_invoker = true)
as
select t.*
from public.transactions t
left join public.transaction_allocations a on a.transaction_id = t.id
where t.member_id is null and a.transaction_id is null;
