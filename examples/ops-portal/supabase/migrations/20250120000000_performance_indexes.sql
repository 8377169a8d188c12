-- Secondary indexes for the sales, receivables and invoice screens.
-- Plain CREATE INDEX (no CONCURRENTLY) so the file stays one transaction.

create index if not exists idx_customers_created_by on public.customers (created_by);
create index if not exists idx_customers_client_name_lower on public.customers (lower(client_name));
create index if not exists idx_sales_transactions_customer_date
  on public.sales_transactions (customer_id, transaction_date desc);
create index if not exists idx_sales_transactions_created_by on public.sales_transactions (created_by);
create index if not exists idx_sales_transactions_payments
  on public.sales_transactions (customer_id)
  where transaction_type = 'payment';
