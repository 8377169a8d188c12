-- Dashboard KPIs. SQL-standard function bodies (PostgreSQL 14+): the body is
-- parsed when the function is created and its dependencies are tracked, and
-- it contains semicolons outside any dollar quotes.

-- Money in is positive, money out negative.
create or replace function public.signed_amount(p_type public.transaction_type, p_amount numeric)
returns numeric
language sql
immutable
parallel safe
return case
  when p_type in ('withdrawal', 'loan_disbursement', 'fee') then -p_amount
  else p_amount
end;

-- Balance of one member. Runs with the caller's rights: RLS applies, so a
-- member of another institution has balance 0 for you.
create or replace function public.member_balance(p_member_id uuid)
returns numeric
language sql
stable
begin atomic
  select coalesce(sum(public.signed_amount(t.type, t.amount)), 0)
  from public.transactions t
  where t.member_id = p_member_id;
end;

create or replace view public.dashboard_summary
with (security_invoker = true)
as
select i.id as institution_id,
       i.name as institution_name,
       (select count(*) from public.groups g where g.institution_id = i.id and g.status = 'active') as active_groups,
       (select count(*) from public.members m where m.institution_id = i.id and m.status = 'active') as active_members,
       (select coalesce(sum(public.signed_amount(t.type, t.amount)), 0)
          from public.transactions t where t.institution_id = i.id) as net_savings
from public.institutions i;
