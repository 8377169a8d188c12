-- Row level security: managers see and change everything; staff see and
-- change the customers and transactions they created.

alter table public.user_management enable row level security;
alter table public.customers enable row level security;
alter table public.sales_transactions enable row level security;

create policy "Users read their own row, managers read all"
  on public.user_management for select to authenticated
  using (user_id = auth.uid() or public.is_manager());

create policy "Managers manage users"
  on public.user_management for all to authenticated
  using (public.is_manager())
  with check (public.is_manager());

create policy "Managers see all customers, staff their own"
  on public.customers for select to authenticated
  using (public.is_manager() or created_by = auth.uid());

create policy "Staff create customers as themselves"
  on public.customers for insert to authenticated
  with check (public.is_manager() or created_by = auth.uid());

create policy "Managers update all customers, staff their own"
  on public.customers for update to authenticated
  using (public.is_manager() or created_by = auth.uid())
  with check (public.is_manager() or created_by = auth.uid());

create policy "Only managers delete customers"
  on public.customers for delete to authenticated
  using (public.is_manager());

create policy "Managers see all transactions, staff their own"
  on public.sales_transactions for select to authenticated
  using (public.is_manager() or created_by = auth.uid());

create policy "Staff record transactions as themselves"
  on public.sales_transactions for insert to authenticated
  with check (public.is_manager() or created_by = auth.uid());

create policy "Managers update all transactions, staff their own"
  on public.sales_transactions for update to authenticated
  using (public.is_manager() or created_by = auth.uid())
  with check (public.is_manager() or created_by = auth.uid());

create policy "Only managers delete transactions"
  on public.sales_transactions for delete to authenticated
  using (public.is_manager());
