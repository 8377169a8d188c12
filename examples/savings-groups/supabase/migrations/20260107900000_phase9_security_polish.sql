-- Security polish: the ledger and the audit log are append-only.

create or replace function public.prevent_mutation()
returns trigger
language plpgsql
as $$
begin
  raise exception '% is append-only: % is not allowed (post a correcting entry instead)',
    tg_table_name, tg_op
    using errcode = 'insufficient_privilege';
end;
$$;

create trigger transactions_immutable
  before update or delete on public.transactions
  for each row execute function public.prevent_mutation();

create trigger audit_log_immutable
  before update or delete on public.audit_log
  for each row execute function public.prevent_mutation();

-- The helpers are for signed-in staff only.
revoke execute on function public.current_institution_id() from public, anon;
revoke execute on function public.current_staff_role() from public, anon;
grant execute on function public.current_institution_id() to authenticated, service_role;
grant execute on function public.current_staff_role() to authenticated, service_role;
