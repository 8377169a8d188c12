-- Fills bench_source deterministically (no random(): every value is a function
-- of the row number, often through md5 of it), so two runs with the same
-- --rows produce the same rows and the same checksums.
--
-- psql variables (set by bench/data.sh):
--   n_customers, n_sales, n_invoices, n_logs   rows per table
--   part_a  true: customers + sales_transactions
--   part_b  true: invoices + whatsapp_message_logs
--   part_c  true: sequences, VACUUM ANALYZE (after a and b)
-- Parts a and b are independent (foreign keys are not checked while
-- session_replication_role = replica) and data.sh runs them at the same time.
--
-- The ids that tie the tables together are computed, not looked up:
--   customer of sales transaction t : 1 + (t * 2654435761) % n_customers
--   sales transaction of invoice i  : 1 + ((i - 1) * n_sales) / n_invoices
--   invoice i's id                  : md5('invoice' || i)::uuid
--   invoice of message m            : 1 + ((m - 1) * n_invoices) / n_logs

\set ON_ERROR_STOP on
set session_replication_role = replica;  -- no FK checks or triggers while loading
set timezone = 'UTC';
set synchronous_commit = off;

\if :part_a

insert into public.customers
  (id, client_name, branch, phone, email, gst_number, credit_limit, preferences, created_at, updated_at)
select
  g,
  'Client ' || g || ' ' || initcap(translate(substr(h, 1, 10), '0123456789', 'ghijklmnop')),
  (array['Hyderabad', 'Bengaluru', 'Chennai', 'Mumbai', 'Pune', 'Delhi'])[1 + g % 6],
  '+91' || (7000000000 + (g * 7919) % 2999999999),
  'accounts' || g || '@' || substr(h, 1, 8) || '.example.com',
  lpad((1 + g % 37)::text, 2, '0') || upper(substr(h, 1, 10)) || '1Z' || upper(substr(h, 11, 1)),
  ((g * 104729) % 100000000) / 100.0,
  jsonb_build_object(
    'language', (array['en', 'hi', 'te', 'ta'])[1 + g % 4],
    'whatsapp_opt_in', g % 3 <> 0,
    'tags', jsonb_build_array('segment-' || (g % 7), 'region-' || (g % 11)),
    'notes', substr(h, 12, 20)),
  timestamptz '2023-01-01 00:00:00+00' + g * interval '97 seconds',
  timestamptz '2023-01-01 00:00:00+00' + g * interval '97 seconds' + (g % 1000) * interval '1 hour'
from (select g, md5(g::text) as h from generate_series(1::bigint, :n_customers) as g) as s;

insert into public.sales_transactions
  (id, customer_id, transaction_type, transaction_date, sku, quantity, amount, gst_rate,
   total_amount, status, attributes, created_at)
overriding system value
select
  g, customer_id, transaction_type, transaction_date, sku, quantity, amount, gst_rate,
  round(amount * quantity * (1 + gst_rate / 100), 2),  -- what the trigger computes
  status, attributes, created_at
from (
  select
    g,
    1 + (g * 2654435761) % :n_customers as customer_id,
    case when g % 4 = 0 then 'payment' else 'sale' end as transaction_type,
    date '2024-01-01' + (g % 730)::int as transaction_date,
    case when g % 4 = 0 then null else 'SKU-' || upper(substr(h, 1, 6)) end as sku,
    1 + g % 12 as quantity,
    ((g * 7919) % 5000000) / 100.0 as amount,
    ((array[0, 5, 12, 18, 28])[1 + g % 5])::numeric(5, 2) as gst_rate,
    case g % 50 when 0 then 'void' when 1 then 'pending' else 'posted' end as status,
    case
      when g % 4 = 0 then jsonb_build_object('mode', (array['upi', 'cash', 'neft', 'cheque'])[1 + g / 4 % 4],
                                             'ref', upper(substr(h, 9, 10)))
      when g % 3 = 0 then null  -- a counter sale: nothing to add
      else jsonb_build_object('channel', (array['web', 'whatsapp'])[1 + g % 2])
    end as attributes,
    timestamptz '2024-01-01 00:00:00+00' + g * interval '11 seconds' as created_at
  from (select g, md5(g::text) as h from generate_series(1::bigint, :n_sales) as g) as s
) as t;

\endif

\if :part_b

insert into public.invoices
  (id, invoice_number, transaction_id, customer_id, status, invoice_date, line_items,
   subtotal, tax_amount, total_amount, created_at)
select
  md5('invoice' || g)::uuid,
  'INV-' || lpad((1000 + g)::text, 8, '0'),
  tid,
  1 + (tid * 2654435761) % :n_customers,
  ((array['draft', 'generated', 'sent', 'paid', 'paid', 'paid', 'cancelled'])[1 + g % 7])::public.invoice_status,
  date '2024-01-01' + (tid % 730)::int,
  case when g % 3 <> 0
    then jsonb_build_array(
      jsonb_build_object('sku', 'SKU-' || upper(substr(h, 1, 6)), 'qty', 1 + g % 12, 'unit_price', unit_price))
    else jsonb_build_array(
      jsonb_build_object('sku', 'SKU-' || upper(substr(h, 1, 6)), 'qty', 1 + g % 12, 'unit_price', unit_price),
      jsonb_build_object('sku', 'SKU-' || upper(substr(h, 7, 6)), 'qty', 1, 'unit_price', round(unit_price / 3, 2)))
  end,
  subtotal,
  round(subtotal * 0.18, 2),
  subtotal + round(subtotal * 0.18, 2),
  timestamptz '2024-01-01 00:00:00+00' + g * interval '19 seconds'
from (
  select
    g, h,
    1 + ((g - 1) * :n_sales) / :n_invoices as tid,
    ((g * 6151) % 5000000) / 100.0 as unit_price,
    round(((g * 6151) % 5000000) / 100.0 * (1 + g % 12), 2) as subtotal
  from (select g, md5(g::text) as h from generate_series(1::bigint, :n_invoices) as g) as s
) as t;

insert into public.whatsapp_message_logs
  (id, customer_id, invoice_id, message_type, phone_number, message_content, status,
   provider_response, retry_count, created_at)
select
  md5('message' || g)::uuid,
  case when g % 50 = 0 then null else customer_id end,
  case when message_type = 'invoice' then md5('invoice' || inv)::uuid end,
  message_type,
  '+91' || (7000000000 + (customer_id * 7919) % 2999999999),
  case message_type
    when 'invoice' then
      'Dear customer, invoice INV-' || lpad((1000 + inv)::text, 8, '0') || ' for Rs. '
      || ((g * 6151) % 5000000) / 100.0 || ' is ready: https://drive.example.com/file/d/'
      || substr(h, 1, 24) || '/view. Thank you for your business.'
    when 'payment_reminder' then
      'Reminder: a payment of Rs. ' || ((g * 7919) % 5000000) / 100.0
      || ' is due on your account. Please pay before the due date to avoid a late fee. Ref '
      || upper(substr(h, 1, 12)) || '.'
    else
      'Hello from Aamodha Operations: your order ' || upper(substr(h, 1, 10))
      || ' has been dispatched and will reach you within 3 working days. Reply STOP to opt out.'
  end,
  status,
  case status
    when 'sent' then jsonb_build_object('id', 'wamid.' || substr(h, 1, 16))
    when 'failed' then jsonb_build_object('error', jsonb_build_object('code', 131026, 'title', 'Message undeliverable'))
  end,
  case when status = 'failed' then 1 + g % 3 else 0 end,
  timestamptz '2024-01-01 00:00:00+00' + g * interval '23 seconds'
from (
  select
    g, h, inv,
    1 + ((1 + ((inv - 1) * :n_sales) / :n_invoices) * 2654435761) % :n_customers as customer_id,
    case when g % 5 < 3 then 'invoice' when g % 5 = 3 then 'payment_reminder' else 'manual' end as message_type,
    ((array['sent', 'sent', 'sent', 'sent', 'sent', 'sent', 'queued', 'failed', 'skipped', 'sent'])[1 + g % 10])::public.whatsapp_message_status as status
  from (
    select g, md5(g::text) as h, 1 + ((g - 1) * :n_invoices) / :n_logs as inv
    from generate_series(1::bigint, :n_logs) as g
  ) as s
) as t;

\endif

\if :part_c

select setval(pg_get_serial_sequence('public.customers', 'id'), :n_customers);
select setval(pg_get_serial_sequence('public.sales_transactions', 'id'), :n_sales);
select setval('public.invoice_number_sequence', 1000 + :n_invoices);

vacuum (analyze) public.customers, public.sales_transactions, public.invoices,
  public.whatsapp_message_logs;

\endif
