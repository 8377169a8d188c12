-- Tables that `schema` created on the target and that its migration files
-- filled (default rows, lookup values): `data` replaces exactly these rows
-- with the source's without --overwrite, as long as the table still holds
-- the number of rows the migrations left in it.
create table if not exists seeded_tables (
    table_name text primary key,
    row_count bigint not null,
    run_id uuid not null,
    recorded_at timestamptz not null default now()
);
