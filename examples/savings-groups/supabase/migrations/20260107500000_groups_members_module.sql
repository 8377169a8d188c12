-- Groups and members screens.

create index idx_groups_institution on public.groups (institution_id);
create index idx_members_institution_group on public.members (institution_id, group_id);
create index idx_members_phone on public.members (phone) where phone is not null;
create index idx_transactions_member on public.transactions (member_id) where member_id is not null;

create or replace view public.group_member_counts
with (security_invoker = true)
as
select g.id as group_id,
       g.institution_id,
       g.name,
       count(m.id) filter (where m.status = 'active') as active_members,
       count(m.id) as all_members
from public.groups g
left join public.members m on m.group_id = g.id
group by g.id, g.institution_id, g.name;
