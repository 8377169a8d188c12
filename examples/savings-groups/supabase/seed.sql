-- Demo data for the SOURCE environment of the savings-groups example.
-- Deterministic: generate_series and arithmetic only (no random(), no now()).
--
-- Institutions:
--   A  3f6a8f5e-1d2c-4b7a-9e10-00000000000a  Kigali Savings Cooperative (KSC)
--   B  3f6a8f5e-1d2c-4b7a-9e10-00000000000b  Huye Women SACCO (HWS)
-- Staff (auth users):
--   e3a1c9d2-5b7f-4c1e-8a2d-0000000000a1  admin of A   alice@ksc.example
--   e3a1c9d2-5b7f-4c1e-8a2d-0000000000a2  staff of A   eric@ksc.example
--   e3a1c9d2-5b7f-4c1e-8a2d-0000000000b1  staff of B   grace@hws.example
-- A has 25 groups and 400 members; B has 15 groups and 200 members.

insert into public.institutions (id, name, code, country, created_at) values
  ('3f6a8f5e-1d2c-4b7a-9e10-00000000000a', 'Kigali Savings Cooperative', 'KSC', 'RW', '2025-06-01 08:00:00+00'),
  ('3f6a8f5e-1d2c-4b7a-9e10-00000000000b', 'Huye Women SACCO', 'HWS', 'RW', '2025-06-01 08:00:00+00');

insert into public.institution_settings (institution_id, currency, momo_sender_ids, sms_parser, reconciliation_tolerance, updated_at) values
  ('3f6a8f5e-1d2c-4b7a-9e10-00000000000a', 'RWF', array['MoMo', 'M-Money'], 'openai', 0, '2025-06-01 08:00:00+00'),
  ('3f6a8f5e-1d2c-4b7a-9e10-00000000000b', 'RWF', array['MoMo'], 'gemini', 100, '2025-06-01 08:00:00+00');

insert into auth.users (
  instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
  raw_app_meta_data, raw_user_meta_data, created_at, updated_at
)
select '00000000-0000-0000-0000-000000000000', u.id, 'authenticated', 'authenticated', u.email,
       '$2a$10$7EqJtq98hPqEX7fNZaFWoOhi5BWX4Z2P2bNYBv5bh3qqbBcQe4t2W',
       timestamptz '2025-06-01 09:00:00+00',
       '{"provider": "email", "providers": ["email"]}'::jsonb,
       jsonb_build_object('full_name', u.full_name),
       timestamptz '2025-06-01 09:00:00+00', timestamptz '2025-06-01 09:00:00+00'
from (values
  ('e3a1c9d2-5b7f-4c1e-8a2d-0000000000a1'::uuid, 'alice@ksc.example', 'Alice Uwase'),
  ('e3a1c9d2-5b7f-4c1e-8a2d-0000000000a2'::uuid, 'eric@ksc.example', 'Eric Habimana'),
  ('e3a1c9d2-5b7f-4c1e-8a2d-0000000000b1'::uuid, 'grace@hws.example', 'Grace Mukamana')
) as u(id, email, full_name);

insert into auth.identities (id, provider_id, user_id, identity_data, provider, created_at, updated_at)
select md5('savings-identity-' || u.id)::uuid, u.id::text, u.id,
       jsonb_build_object('sub', u.id::text, 'email', u.email, 'email_verified', true),
       'email', u.created_at, u.created_at
from auth.users u
where u.email like '%@ksc.example' or u.email like '%@hws.example';

insert into public.staff (id, user_id, institution_id, full_name, email, role, is_active, created_at, invited_by, invited_at) values
  (md5('savings-staff-a1')::uuid, 'e3a1c9d2-5b7f-4c1e-8a2d-0000000000a1', '3f6a8f5e-1d2c-4b7a-9e10-00000000000a',
   'Alice Uwase', 'alice@ksc.example', 'admin', true, '2025-06-01 09:00:00+00', null, null),
  (md5('savings-staff-a2')::uuid, 'e3a1c9d2-5b7f-4c1e-8a2d-0000000000a2', '3f6a8f5e-1d2c-4b7a-9e10-00000000000a',
   'Eric Habimana', 'eric@ksc.example', 'staff', true, '2025-06-01 09:00:00+00',
   'e3a1c9d2-5b7f-4c1e-8a2d-0000000000a1', '2025-06-01 08:30:00+00'),
  (md5('savings-staff-b1')::uuid, 'e3a1c9d2-5b7f-4c1e-8a2d-0000000000b1', '3f6a8f5e-1d2c-4b7a-9e10-00000000000b',
   'Grace Mukamana', 'grace@hws.example', 'admin', true, '2025-06-01 09:00:00+00', null, null);

-- 40 groups: 1-25 in A, 26-40 in B.
insert into public.groups (id, institution_id, group_code, name, meeting_day, contribution_amount, status, created_at)
select md5('savings-group-' || n)::uuid,
       case when n <= 25 then '3f6a8f5e-1d2c-4b7a-9e10-00000000000a'::uuid
            else '3f6a8f5e-1d2c-4b7a-9e10-00000000000b'::uuid end,
       case when n <= 25 then 'KSC-G' else 'HWS-G' end || lpad(n::text, 3, '0'),
       (array['Abishyize Hamwe', 'Twisungane', 'Dufatanye', 'Terimbere', 'Ejo Heza'])[n % 5 + 1] || ' ' || n,
       (array['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'])[n % 7 + 1],
       (n % 4 + 1) * 1000,
       case when n % 13 = 0 then 'suspended' else 'active' end,
       timestamptz '2025-06-02 08:00:00+00' + n * interval '1 hour'
from generate_series(1, 40) as n;

-- 600 members: 1-400 in A (groups 1-25), 401-600 in B (groups 26-40).
insert into public.members (id, institution_id, group_id, member_code, full_name, phone, national_id, status, joined_at, created_at)
select md5('savings-member-' || n)::uuid,
       case when n <= 400 then '3f6a8f5e-1d2c-4b7a-9e10-00000000000a'::uuid
            else '3f6a8f5e-1d2c-4b7a-9e10-00000000000b'::uuid end,
       md5('savings-group-' || case when n <= 400 then (n - 1) % 25 + 1 else 26 + (n - 401) % 15 end)::uuid,
       'M' || lpad(n::text, 5, '0'),
       (array['Jean', 'Aline', 'Claude', 'Diane', 'Patrick', 'Solange', 'Eric', 'Chantal'])[n % 8 + 1] || ' '
         || (array['Niyonzima', 'Uwimana', 'Mugisha', 'Ingabire', 'Nshimiyimana', 'Mukeshimana'])[n % 6 + 1],
       '+25078' || lpad((n * 104729 % 10000000)::text, 7, '0'),
       '1198' || lpad((n * 7717 % 1000000000000)::text, 12, '0'),
       (case when n % 40 = 0 then 'exited' when n % 17 = 0 then 'inactive' else 'active' end)::public.member_status,
       date '2025-06-02' + n % 120,
       timestamptz '2025-06-02 09:00:00+00' + n * interval '10 minutes'
from generate_series(1, 600) as n;

-- 3000 ledger entries; every 23rd came in by SMS without a member (unallocated).
insert into public.transactions (id, institution_id, member_id, group_id, type, amount, currency, channel, reference, occurred_at, created_at)
select n,
       case when m <= 400 then '3f6a8f5e-1d2c-4b7a-9e10-00000000000a'::uuid
            else '3f6a8f5e-1d2c-4b7a-9e10-00000000000b'::uuid end,
       case when n % 23 = 0 then null else md5('savings-member-' || m)::uuid end,
       md5('savings-group-' || case when m <= 400 then (m - 1) % 25 + 1 else 26 + (m - 401) % 15 end)::uuid,
       (case when n * 7 % 97 < 6 then 'withdrawal'
             when n * 7 % 97 < 10 then 'loan_disbursement'
             when n * 7 % 97 < 25 then 'loan_repayment'
             when n * 7 % 97 < 28 then 'fee'
             else 'deposit' end)::public.transaction_type,
       (500 + n * 313 % 49500)::numeric,
       'RWF',
       (array['momo', 'cash', 'bank'])[n % 3 + 1],
       'TX' || to_char(date '2025-07-01' + (n - 1) / 20, 'YYYYMMDD') || lpad(n::text, 6, '0'),
       timestamptz '2025-07-01 07:00:00+00' + (n - 1) / 20 * interval '1 day' + (n % 20) * interval '30 minutes',
       timestamptz '2025-07-01 07:00:00+00' + (n - 1) / 20 * interval '1 day' + (n % 20) * interval '30 minutes'
         + interval '2 minutes'
from generate_series(1, 3000) as n
cross join lateral (select (n - 1) % 600 + 1 as m) as mm;

select setval(pg_get_serial_sequence('public.transactions', 'id'), (select max(id) from public.transactions));

-- Half of the unallocated entries were allocated; the trigger writes audit_log rows.
insert into public.transaction_allocations (transaction_id, member_id, allocated_by, allocated_at, note)
select t.id,
       md5('savings-member-' || ((t.id - 1) % 600 + 1))::uuid,
       case when t.institution_id = '3f6a8f5e-1d2c-4b7a-9e10-00000000000a'
            then 'e3a1c9d2-5b7f-4c1e-8a2d-0000000000a2'::uuid
            else 'e3a1c9d2-5b7f-4c1e-8a2d-0000000000b1'::uuid end,
       t.occurred_at + interval '1 day',
       'Matched by phone number'
from public.transactions t
where t.member_id is null and t.id % 46 = 0
order by t.id;

-- Sign-in events (the rest of audit_log comes from the allocation trigger).
insert into public.audit_log (institution_id, actor_id, action, entity_type, entity_id, details, created_at)
select case when n % 3 = 0 then '3f6a8f5e-1d2c-4b7a-9e10-00000000000b'::uuid
            else '3f6a8f5e-1d2c-4b7a-9e10-00000000000a'::uuid end,
       case n % 3 when 0 then 'e3a1c9d2-5b7f-4c1e-8a2d-0000000000b1'::uuid
                  when 1 then 'e3a1c9d2-5b7f-4c1e-8a2d-0000000000a1'::uuid
                  else 'e3a1c9d2-5b7f-4c1e-8a2d-0000000000a2'::uuid end,
       'auth.sign_in', 'session', null, jsonb_build_object('ip', '10.0.0.' || n),
       timestamptz '2025-07-01 06:55:00+00' + n * interval '1 day'
from generate_series(1, 30) as n
order by n;

insert into public.sms_devices (device_identifier, institution_id, label, last_seen_at) values
  ('ksc-android-01', '3f6a8f5e-1d2c-4b7a-9e10-00000000000a', 'KSC head office', '2025-09-30 18:00:00+00'),
  ('ksc-android-02', '3f6a8f5e-1d2c-4b7a-9e10-00000000000a', 'KSC Remera branch', '2025-09-30 18:00:00+00'),
  ('hws-android-01', '3f6a8f5e-1d2c-4b7a-9e10-00000000000b', 'HWS office', '2025-09-30 18:00:00+00');

-- 500 SMS: the first 400 parsed into a mobile-money transaction, the rest pending or failed.
insert into public.sms_messages (
  id, institution_id, device_identifier, sender_phone, sms_text, received_at,
  parse_status, parsed, parse_error, transaction_id, created_at
)
select md5('savings-sms-' || n)::uuid,
       inst,
       case when inst = '3f6a8f5e-1d2c-4b7a-9e10-00000000000a'::uuid
            then 'ksc-android-0' || (n % 2 + 1) else 'hws-android-01' end,
       'MoMo',
       'You have received ' || amount || ' RWF from ' || '+25078' || lpad((n * 104729 % 10000000)::text, 7, '0')
         || '. Ref: ' || lpad(n::text, 10, '0') || '.',
       received,
       status,
       case when status = 'parsed'
            then jsonb_build_object('amount', amount, 'currency', 'RWF', 'reference', lpad(n::text, 10, '0')) end,
       case when status = 'failed' then 'Unrecognised message format' end,
       case when status = 'parsed' then n * 3 end,
       received + interval '5 seconds'
from generate_series(1, 500) as n
cross join lateral (
  select case when n <= 400 then (select t.institution_id from public.transactions t where t.id = n * 3)
              when n % 3 = 0 then '3f6a8f5e-1d2c-4b7a-9e10-00000000000b'::uuid
              else '3f6a8f5e-1d2c-4b7a-9e10-00000000000a'::uuid end as inst,
         case when n <= 400 then 'parsed' when n % 4 = 0 then 'failed' else 'pending' end as status,
         (500 + n * 313 % 49500) as amount,
         timestamptz '2025-07-01 07:00:00+00' + n * interval '47 minutes' as received
) as x;
