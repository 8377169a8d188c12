-- Edge Function rollback (runbook Level 2): before `functions` deploys over
-- an existing function, the deployment the target serves is saved here: its
-- metadata, the bundle `GET /functions/{slug}/body` serves (the API keeps only
-- the current version, so this is the only copy) and the bundle's sha-256.
-- `rollback` with `rollback-functions` redeploys the newest saved bundle of
-- each function and proves the API serves the same sha-256 again.
create table if not exists function_snapshots (
    id bigserial primary key,
    run_id uuid not null,
    project_ref text not null,
    slug text not null,
    version bigint not null,
    verify_jwt boolean,
    import_map boolean,
    entrypoint_path text,
    import_map_path text,
    body bytea not null,
    body_sha256 text not null,
    saved_at timestamptz not null default now(),
    restored_at timestamptz,
    restored_by uuid
);
create index if not exists function_snapshots_slug
    on function_snapshots (project_ref, slug, saved_at desc);
