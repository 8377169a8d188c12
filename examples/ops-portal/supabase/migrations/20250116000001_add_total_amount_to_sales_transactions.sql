-- GST-inclusive totals, filled by a trigger so every client computes them the same way.

alter table public.sales_transactions
  add column gst_rate numeric(5, 2) not null default 18.00,
  add column total_amount numeric(14, 2);

update public.sales_transactions
set total_amount = round(amount * quantity * (1 + gst_rate / 100), 2)
where total_amount is null;

create or replace function public.compute_transaction_total()
returns trigger
language plpgsql
as $$
begin
  new.total_amount := round(new.amount * new.quantity * (1 + new.gst_rate / 100), 2);
  return new;
end;
$$;

create trigger sales_transactions_compute_total
  before insert or update of amount, quantity, gst_rate on public.sales_transactions
  for each row execute function public.compute_transaction_total();
