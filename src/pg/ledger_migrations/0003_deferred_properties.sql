-- Deferred indexes and constraints keep every property they had: the
-- statements that put back a comment, a replica identity or a clustering
-- after the rebuild, and the table a foreign key references (a key to a
-- table that was not copied may end `not valid`: finished, not owed).
alter table deferred_objects add column if not exists follow_up text[] not null default '{}';
alter table deferred_objects add column if not exists referenced_table text;
alter table deferred_objects drop constraint if exists deferred_objects_status_check;
alter table deferred_objects add constraint deferred_objects_status_check
    check (status in ('dropped', 'restored', 'not valid'));
