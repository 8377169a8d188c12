-- Cron holds: pg_cron jobs of a target that is not live yet, paused by
-- `schema` (or `rollback`) and resumed by `cutover`, are kept in
-- guard_states with kind 'cron-hold'. guard_states is made on demand by
-- cutover (GuardLedger::create, which now allows the new kind); a ledger
-- that already has it gets the wider check here.
do $cron_holds$
begin
    if to_regclass('guard_states') is not null then
        alter table guard_states drop constraint if exists guard_states_kind_check;
        alter table guard_states add constraint guard_states_kind_check
            check (kind in ('switch', 'cron', 'cron-hold'));
    end if;
end
$cron_holds$;
