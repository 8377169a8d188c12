-- Invoices generated from sales transactions and uploaded to Google Drive / OneDrive.

create type public.invoice_status as enum ('draft', 'generated', 'sent', 'paid', 'cancelled');

-- A free-standing sequence (not owned by a column): invoice numbers must keep
-- counting from the source's last value after a migration.
create sequence public.invoice_number_sequence start with 1001;

create table public.invoices (
  id uuid primary key default gen_random_uuid(),
  invoice_number text not null unique
    default ('INV-' || lpad(nextval('public.invoice_number_sequence')::text, 6, '0')),
  transaction_id bigint not null references public.sales_transactions (id) on delete restrict,
  customer_id bigint not null references public.customers (id) on delete restrict,
  status public.invoice_status not null default 'generated',
  invoice_date date not null default current_date,
  line_items jsonb not null default '[]'::jsonb,
  subtotal numeric(14, 2) not null default 0,
  tax_amount numeric(14, 2) not null default 0,
  total_amount numeric(14, 2) not null default 0,
  storage_provider text,
  file_id text,
  file_url text,
  created_by uuid references auth.users (id) default auth.uid(),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create index idx_invoices_transaction on public.invoices (transaction_id);
create index idx_invoices_customer on public.invoices (customer_id);
create index idx_invoices_status on public.invoices (status) where status <> 'paid';

create trigger invoices_set_updated_at
  before update on public.invoices
  for each row execute function public.set_updated_at();

alter table public.invoices enable row level security;

create policy "Managers see all invoices, staff their own"
  on public.invoices for select to authenticated
  using (public.is_manager() or created_by = auth.uid());

create policy "Staff create invoices as themselves"
  on public.invoices for insert to authenticated
  with check (public.is_manager() or created_by = auth.uid());

create policy "Managers update invoices"
  on public.invoices for update to authenticated
  using (public.is_manager())
  with check (public.is_manager());
