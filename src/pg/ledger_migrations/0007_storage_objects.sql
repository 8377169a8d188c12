-- Storage objects the `storage` phase copied: what makes a re-run resume.
-- One row per bucket and path, the last copy wins: the source object's size
-- and ETag as copied, and the ETag the target listed for it afterwards (the
-- two can differ when a project computes ETags of large uploads in parts),
-- so a later run skips an object whose source and target are unchanged
-- since, and copies it again when either changed.
create table if not exists storage_objects (
    bucket text not null,
    path text not null,
    size bigint not null,
    etag text,
    target_etag text,
    copied_at timestamptz not null default now(),
    run_id uuid not null,
    primary key (bucket, path)
);
