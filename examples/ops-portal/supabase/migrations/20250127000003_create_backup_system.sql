-- Log of database backups uploaded to Drive by the database-backup function.

create table public.backup_logs (
  id uuid primary key default gen_random_uuid(),
  backup_type text not null default 'scheduled' check (backup_type in ('scheduled', 'manual')),
  status text not null check (status in ('running', 'success', 'failed')),
  file_name text,
  file_size_bytes bigint,
  drive_file_id text,
  error_message text,
  triggered_by uuid references auth.users (id),
  started_at timestamptz not null default now(),
  completed_at timestamptz
);

create index idx_backup_logs_started_at on public.backup_logs (started_at desc);

alter table public.backup_logs enable row level security;

create policy "Managers read backup logs"
  on public.backup_logs for select to authenticated
  using (public.is_manager());

insert into public.invoice_configurations (config_key, config_value, config_type, description) values
  ('backup_folder_path', 'MyDrive/Backups', 'string', 'Drive folder for database backups')
on conflict (config_key) do nothing;
