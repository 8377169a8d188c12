-- Runs outside a transaction (CONCURRENTLY): keep it the only statement here.
create index concurrently if not exists idx_transactions_institution_occurred_at
  on public.transactions (institution_id, occurred_at desc);
