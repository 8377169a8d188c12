-- The ledger as cutover 0.1 created it. Every statement is "if not exists",
-- so a ledger made by 0.1 (before this history table existed) takes this
-- migration as a no-op and is upgraded in place by the next ones.
-- Runs with search_path = the ledger's schema. Never edit an applied file:
-- add a new one.
create table if not exists runs (
    id uuid primary key,
    phases text[] not null,
    git_sha text,
    actor text,
    workflow_run_url text,
    source text,
    target text,
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    status text not null default 'running'
);
create table if not exists steps (
    id bigserial primary key,
    run_id uuid not null references runs(id),
    phase text not null,
    step text not null,
    started_at timestamptz not null,
    finished_at timestamptz,
    outcome text not null,
    detail jsonb not null default '{}'
);
create index if not exists steps_run_idx on steps (run_id);
create table if not exists migrations (
    version text primary key,
    name text,
    checksum text not null,
    applied_at timestamptz not null default now(),
    run_id uuid references runs(id)
);
create table if not exists snapshots (
    id bigserial primary key,
    run_id uuid not null references runs(id),
    side text not null check (side in ('source', 'target')),
    table_name text not null,
    row_count bigint not null,
    checksum text,
    taken_at timestamptz not null default now()
);
create index if not exists snapshots_run_idx on snapshots (run_id);
create table if not exists deferred_objects (
    id bigserial primary key,
    table_name text not null,
    kind text not null,
    name text not null,
    definition text not null,
    deferral text not null default '',
    validated boolean not null default true,
    status text not null check (status in ('dropped', 'restored')),
    run_id uuid references runs(id),
    dropped_at timestamptz not null default now(),
    restored_at timestamptz
);
create table if not exists table_copies (
    table_name text primary key,
    status text not null check (status in ('copying', 'done', 'complete')),
    rows bigint not null default 0,
    bytes bigint not null default 0,
    run_id uuid references runs(id),
    started_at timestamptz,
    finished_at timestamptz
);
