insert into public.invoice_configurations (config_key, config_value, config_type, description) values
  ('storage_provider', 'google_drive', 'string', 'google_drive | onedrive')
on conflict (config_key) do nothing;

alter table public.invoice_configurations
  add constraint invoice_configurations_storage_provider_check
  check (config_key <> 'storage_provider' or config_value in ('google_drive', 'onedrive'));
