-- Demo data for the SOURCE environment of the ops-portal example.
-- Deterministic: generate_series and arithmetic only (no random(), no now()),
-- so two loads give byte-identical tables and checksums can be compared.
--
-- Users (log in as either in a local Supabase; password "cutover-demo"):
--   manager  7c0c7c1e-3a5e-4d8b-9a61-0f4b2e5d1a01  manager@aamodha.example
--   staff    7c0c7c1e-3a5e-4d8b-9a61-0f4b2e5d1a02  staff@aamodha.example
-- Staff created every customer whose id is a multiple of 3, and all of those
-- customers' transactions and invoices.

insert into auth.users (
  instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
  raw_app_meta_data, raw_user_meta_data, created_at, updated_at, last_sign_in_at
) values
  ('00000000-0000-0000-0000-000000000000', '7c0c7c1e-3a5e-4d8b-9a61-0f4b2e5d1a01',
   'authenticated', 'authenticated', 'manager@aamodha.example',
   '$2a$10$7EqJtq98hPqEX7fNZaFWoOhi5BWX4Z2P2bNYBv5bh3qqbBcQe4t2W',
   '2024-12-01 08:00:00+00', '{"provider": "email", "providers": ["email"]}',
   '{"full_name": "Meera Manager"}', '2024-12-01 08:00:00+00', '2024-12-01 08:00:00+00',
   '2025-01-27 07:30:00+00'),
  ('00000000-0000-0000-0000-000000000000', '7c0c7c1e-3a5e-4d8b-9a61-0f4b2e5d1a02',
   'authenticated', 'authenticated', 'staff@aamodha.example',
   '$2a$10$7EqJtq98hPqEX7fNZaFWoOhi5BWX4Z2P2bNYBv5bh3qqbBcQe4t2W',
   '2024-12-02 08:00:00+00', '{"provider": "email", "providers": ["email"]}',
   '{"full_name": "Suresh Staff"}', '2024-12-02 08:00:00+00', '2024-12-02 08:00:00+00',
   '2025-01-27 07:45:00+00');

insert into auth.identities (id, provider_id, user_id, identity_data, provider, created_at, updated_at)
select md5('ops-portal-identity-' || u.id)::uuid, u.id::text, u.id,
       jsonb_build_object('sub', u.id::text, 'email', u.email, 'email_verified', true),
       'email', u.created_at, u.created_at
from auth.users u
where u.email like '%@aamodha.example';

insert into public.user_management (user_id, email, full_name, role, is_active, created_at, updated_at) values
  ('7c0c7c1e-3a5e-4d8b-9a61-0f4b2e5d1a01', 'manager@aamodha.example', 'Meera Manager', 'manager', true,
   '2024-12-01 08:00:00+00', '2024-12-01 08:00:00+00'),
  ('7c0c7c1e-3a5e-4d8b-9a61-0f4b2e5d1a02', 'staff@aamodha.example', 'Suresh Staff', 'staff', true,
   '2024-12-02 08:00:00+00', '2024-12-02 08:00:00+00');

-- 300 customers.
insert into public.customers (
  id, client_name, branch, phone, whatsapp_number, email, gst_number, address,
  credit_limit, created_by, created_at, updated_at
)
select n,
       'Customer ' || lpad(n::text, 3, '0'),
       (array['Hyderabad', 'Vijayawada', 'Guntur', 'Warangal'])[n % 4 + 1],
       '+9198' || lpad((n * 7919 % 100000000)::text, 8, '0'),
       case when n % 5 = 0 then null else '+9198' || lpad((n * 7919 % 100000000)::text, 8, '0') end,
       'customer' || n || '@example.com',
       '36AAAC' || lpad(n::text, 5, '0') || 'Z5',
       n || ' Market Road, ' || (array['Hyderabad', 'Vijayawada', 'Guntur', 'Warangal'])[n % 4 + 1],
       (n % 10 + 1) * 25000,
       case when n % 3 = 0 then '7c0c7c1e-3a5e-4d8b-9a61-0f4b2e5d1a02'::uuid
            else '7c0c7c1e-3a5e-4d8b-9a61-0f4b2e5d1a01'::uuid end,
       timestamptz '2025-01-01 09:00:00+00' + n * interval '1 hour',
       timestamptz '2025-01-01 09:00:00+00' + n * interval '1 hour'
from generate_series(1, 300) as n;

select setval(pg_get_serial_sequence('public.customers', 'id'), (select max(id) from public.customers));

-- 2000 sales and payments (every 5th is a payment); total_amount is set by trigger.
insert into public.sales_transactions (
  id, customer_id, transaction_type, transaction_date, sku, quantity, amount, gst_rate,
  description, created_by, created_at, updated_at
)
overriding system value
select n,
       (n - 1) % 300 + 1,
       case when n % 5 = 0 then 'payment' else 'sale' end,
       date '2025-01-01' + (n - 1) / 6,
       case when n % 5 = 0 then null else (array['AQ-500ML', 'AQ-1L', 'AQ-2L', 'AQ-20L'])[n % 4 + 1] end,
       case when n % 5 = 0 then 1 else n % 10 + 1 end,
       case when n % 5 = 0 then (500 + n * 53 % 4500)::numeric
            else (100 + n * 37 % 900)::numeric + 0.50 end,
       case when n % 5 = 0 then 0 else 18 end,
       case when n % 5 = 0 then 'Payment received' else 'Sale #' || n end,
       case when ((n - 1) % 300 + 1) % 3 = 0 then '7c0c7c1e-3a5e-4d8b-9a61-0f4b2e5d1a02'::uuid
            else '7c0c7c1e-3a5e-4d8b-9a61-0f4b2e5d1a01'::uuid end,
       timestamptz '2025-01-01 10:00:00+00' + (n - 1) / 6 * interval '1 day' + (n % 6) * interval '1 hour',
       timestamptz '2025-01-01 10:00:00+00' + (n - 1) / 6 * interval '1 day' + (n % 6) * interval '1 hour'
from generate_series(1, 2000) as n;

select setval(pg_get_serial_sequence('public.sales_transactions', 'id'), (select max(id) from public.sales_transactions));

-- One invoice per sale among the first 1800 transactions.
insert into public.invoices (
  id, invoice_number, transaction_id, customer_id, status, invoice_date, line_items,
  subtotal, tax_amount, total_amount, storage_provider, file_id, file_url,
  created_by, created_at, updated_at
)
select md5('ops-portal-invoice-' || st.id)::uuid,
       'INV-' || lpad((1000 + st.id)::text, 6, '0'),
       st.id,
       st.customer_id,
       (case st.id % 7 when 0 then 'paid' when 1 then 'sent' else 'generated' end)::public.invoice_status,
       st.transaction_date,
       jsonb_build_array(jsonb_build_object(
         'sku', st.sku, 'quantity', st.quantity, 'unit_price', st.amount, 'gst_rate', st.gst_rate)),
       st.amount * st.quantity,
       st.total_amount - st.amount * st.quantity,
       st.total_amount,
       'google_drive',
       'drive-file-' || st.id,
       'https://drive.google.com/file/d/drive-file-' || st.id || '/view',
       st.created_by,
       st.created_at + interval '5 minutes',
       st.created_at + interval '5 minutes'
from public.sales_transactions st
where st.transaction_type = 'sale' and st.id <= 1800;

select setval('public.invoice_number_sequence', 1000 + (select max(transaction_id) from public.invoices));

insert into public.whatsapp_templates (id, template_name, template_type, message_template, is_active, created_at, updated_at) values
  (md5('ops-portal-template-1')::uuid, 'invoice_ready', 'invoice',
   'Hello {{customer_name}}, your invoice {{invoice_number}} for Rs. {{amount}} is ready: {{invoice_url}}',
   true, '2025-01-27 06:00:00+00', '2025-01-27 06:00:00+00'),
  (md5('ops-portal-template-2')::uuid, 'payment_reminder', 'payment_reminder',
   'Dear {{customer_name}}, Rs. {{outstanding}} is outstanding as of {{date}}. Please pay at your earliest convenience.',
   true, '2025-01-27 06:00:00+00', '2025-01-27 06:00:00+00'),
  (md5('ops-portal-template-3')::uuid, 'welcome', 'welcome',
   'Welcome to Aamodha, {{customer_name}}!', true, '2025-01-27 06:00:00+00', '2025-01-27 06:00:00+00'),
  (md5('ops-portal-template-4')::uuid, 'festival_offer', 'custom',
   'Festival offer: 5% off 20L cans this week.', false, '2025-01-27 06:00:00+00', '2025-01-27 06:00:00+00');

-- 600 WhatsApp messages; every 10th failed (some already retried).
insert into public.whatsapp_message_logs (
  id, customer_id, invoice_id, template_id, message_type, phone_number, message_content,
  status, provider_message_id, retry_count, error_message, sent_at, created_at
)
select n,
       (n * 7 - 1) % 300 + 1,
       case when n % 3 = 0 and (n * 3) % 5 <> 0 then md5('ops-portal-invoice-' || (n * 3))::uuid end,
       md5('ops-portal-template-' || (case n % 3 when 0 then 1 when 1 then 2 else 3 end))::uuid,
       case n % 3 when 0 then 'invoice' when 1 then 'payment_reminder' else 'manual' end,
       '+9198' || lpad((((n * 7 - 1) % 300 + 1) * 7919 % 100000000)::text, 8, '0'),
       'Message ' || n || ' for customer ' || ((n * 7 - 1) % 300 + 1),
       (case when n % 10 = 0 then 'failed' else 'sent' end)::public.whatsapp_message_status,
       case when n % 10 = 0 then null else 'msg_' || lpad(n::text, 6, '0') end,
       case when n % 10 = 0 then n % 4 else 0 end,
       case when n % 10 = 0 then 'Recipient not on WhatsApp' end,
       case when n % 10 = 0 then null
            else timestamptz '2025-01-02 08:00:00+00' + n * interval '30 minutes' + interval '3 seconds' end,
       timestamptz '2025-01-02 08:00:00+00' + n * interval '30 minutes'
from generate_series(1, 600) as n;

select setval(pg_get_serial_sequence('public.whatsapp_message_logs', 'id'), (select max(id) from public.whatsapp_message_logs));

-- 60 nightly backups; every 15th failed.
insert into public.backup_logs (
  id, backup_type, status, file_name, file_size_bytes, drive_file_id, error_message,
  triggered_by, started_at, completed_at
)
select md5('ops-portal-backup-' || n)::uuid,
       case when n % 10 = 0 then 'manual' else 'scheduled' end,
       case when n % 15 = 0 then 'failed' else 'success' end,
       'backup-' || to_char(date '2024-11-28' + n, 'YYYY-MM-DD') || '.sql.gz',
       case when n % 15 = 0 then null else 1048576 + n * 8192 end,
       case when n % 15 = 0 then null else 'drive-backup-' || n end,
       case when n % 15 = 0 then 'Google Drive quota exceeded' end,
       case when n % 10 = 0 then '7c0c7c1e-3a5e-4d8b-9a61-0f4b2e5d1a01'::uuid end,
       (date '2024-11-28' + n) + time '02:00',
       (date '2024-11-28' + n) + time '02:03'
from generate_series(1, 60) as n;

-- The source is the live environment: WhatsApp is on and paths are its own.
-- cutover turns whatsapp_enabled off here before the target goes live.
update public.invoice_configurations
set config_value = v.value, updated_at = timestamptz '2025-01-27 06:00:00+00'
from (values
  ('whatsapp_enabled', 'true'),
  ('whatsapp_api_key', 'uat-360messenger-key-not-real'),
  ('invoice_folder_path', 'MyDrive/Invoice-UAT'),
  ('backup_folder_path', 'MyDrive/Backups-UAT'),
  ('whatsapp_failure_notification_email', 'uat-alerts@aamodha.example')
) as v(key, value)
where config_key = v.key;
