-- Outstanding balance per customer as of a date. Runs with the caller's
-- rights, so RLS limits staff to their own customers.

create or replace function public.get_customer_receivables(p_as_of date default current_date)
returns table (
  customer_id bigint,
  client_name text,
  total_sales numeric,
  total_payments numeric,
  outstanding numeric,
  last_payment_date date
)
language plpgsql
stable
as $function$
declare
  v_note text := 'sales; payments; outstanding = sales - payments';  -- semicolons inside a string
begin
  if p_as_of is null then
    raise exception 'p_as_of must not be null (%)', v_note;
  end if;

  return query
  select c.id,
         c.client_name,
         coalesce(sum(st.total_amount) filter (where st.transaction_type = 'sale'), 0) as total_sales,
         coalesce(sum(st.amount) filter (where st.transaction_type = 'payment'), 0) as total_payments,
         coalesce(sum(st.total_amount) filter (where st.transaction_type = 'sale'), 0)
           - coalesce(sum(st.amount) filter (where st.transaction_type = 'payment'), 0) as outstanding,
         max(st.transaction_date) filter (where st.transaction_type = 'payment') as last_payment_date
  from public.customers c
  left join public.sales_transactions st
    on st.customer_id = c.id and st.transaction_date <= p_as_of
  group by c.id, c.client_name
  order by outstanding desc, c.id;
end;
$function$;

comment on function public.get_customer_receivables(date) is
  'Outstanding receivables per customer; used by the payment reminder job.';
