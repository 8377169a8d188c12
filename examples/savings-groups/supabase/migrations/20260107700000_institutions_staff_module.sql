-- Staff invitations (staff-invite function) and admin management of staff.

alter table public.staff
  add column invited_by uuid references auth.users (id),
  add column invited_at timestamptz;

create index idx_staff_institution on public.staff (institution_id);

create policy "Admins manage staff of their institution"
  on public.staff for all to authenticated
  using (institution_id = public.current_institution_id() and public.current_staff_role() = 'admin')
  with check (institution_id = public.current_institution_id() and public.current_staff_role() = 'admin');
