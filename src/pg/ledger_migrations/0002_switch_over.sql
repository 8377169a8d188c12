-- The switch-over: the replication a replicate-mode `data` created (at most
-- one active), and the source's write freezes.
create table if not exists replications (
    id bigserial primary key,
    run_id uuid not null references runs(id),
    subscription text not null,
    publication text not null,
    role_name text not null,
    password_sha256 text not null,
    tables text[] not null,
    state text not null check (state in ('creating', 'syncing', 'streaming', 'retired')),
    detail jsonb not null default '{}',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    retired_at timestamptz,
    retired_by uuid
);
create unique index if not exists replications_active
    on replications ((true)) where retired_at is null;
create table if not exists freezes (
    id bigserial primary key,
    run_id uuid not null references runs(id),
    tables text[] not null,
    lock_wait_ms bigint not null,
    frozen_at timestamptz not null default now(),
    lifted_at timestamptz,
    lifted_by uuid,
    detail jsonb not null default '{}'
);
