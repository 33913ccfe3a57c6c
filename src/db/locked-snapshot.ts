/**
 * The worker's snapshot of one opportunity, read under locks that last until its transaction ends
 * (the send path of `deliver`). The scan's batch reader, `loadSnapshots`, takes no locks; this one
 * reads one opportunity in two statements, the fewest the locks allow, sent together in one round
 * trip (`runTogether`; with the transaction's BEGIN, which the pool sends along with them):
 *
 * 1. `LOCK`: the opportunity FOR SHARE with its stage and its roles; then each contact's
 *    advisory lock, in ascending id order; then the contacts FOR SHARE. The advisory
 *    lock serialises decisions about the same person (the frequency cap counts what the other
 *    decision claimed), and one order for everybody means two decisions about overlapping
 *    contacts cannot deadlock.
 *    Each step reads the rows the one before it returned, so PostgreSQL cannot reorder them: the
 *    opportunity is locked before its contacts' advisory locks are taken, and those are held before
 *    the contacts are read. A row locked FOR SHARE is read as last committed, even when it changed
 *    while the statement waited for a lock.
 * 2. `HISTORY`: the decision history, and when asked for, the sends to these contacts and the
 *    activities, as JSON in one row. Its own statement, so that it sees every decision committed
 *    before the advisory locks were granted: PostgreSQL runs it once LOCK is done, with a snapshot
 *    of its own. It counts the sends of the contacts LOCK locked, which LOCK leaves in a
 *    transaction-local setting, rather than waiting for LOCK's answer to name them.
 *
 * A CRM change to stage, closing date, contact or consent either committed before these reads or
 * waits until the transaction ends. A change of roles does not wait; one that committed while
 * LOCK waited for the opportunity (LOCK's roles are older than its opportunity) is seen by
 * HISTORY, and the two reads are refused (`StaleRolesError`) and made again.
 *
 * Both are plain SQL compiled once, and prepared statements (`prepared`): the worker runs them for
 * every send, and building and compiling them with kysely's query builder each time showed in CPU
 * profiles, planning them each time in PostgreSQL's. The JSON inside is `snapshot-json.ts`'.
 */
import { CompiledQuery, type QueryResult } from 'kysely';
import { runTogether } from './commit-hook.ts';
import { parseInt8, prepared, type Db } from './database.ts';
import { toOpportunity, type OpportunityRow } from './opportunities.ts';
import type { SnapshotNeeds } from './snapshots.ts';
import {
  activityFromJson, activityJson, contactFromJson, contactJson, decisionFromJson, decisionJson, ms,
  instantFromJson, type ActivityJson, type ContactJson, type DecisionJson, type SentJson,
} from './snapshot-json.ts';
import type { ContactRole, Snapshot } from '../journey/types.ts';

/** The roles changed while the opportunity was being read: roll back and read again. */
export class StaleRolesError extends Error {
  override name = 'StaleRolesError';

  constructor(opportunityId: number) {
    super(`opportunity ${opportunityId}: its roles changed while it was being read`);
  }
}

/** Inside a transaction: null when the opportunity no longer exists. Throws `StaleRolesError`. */
export async function lockAndLoadSnapshot(trx: Db, id: number, needs: SnapshotNeeds): Promise<Snapshot | null> {
  const since = needs.sentSince;
  const history = since === null
    ? CompiledQuery.raw(historyQuery(false, needs.activities), [id])
    : CompiledQuery.raw(historyQuery(true, needs.activities), [id, since]);
  const [locked, read] = await runTogether(trx, [CompiledQuery.raw(LOCK, [id]), history]) as [QueryResult<LockedRow>, QueryResult<HistoryRow>];
  const row = locked.rows[0];
  if (!row) return null;
  const more = read.rows[0];
  // Roles are not locked: LOCK read them as its statement began, the opportunity as it was once
  // its lock was granted. A CRM transaction that changed both and committed while LOCK waited
  // would leave LOCK with the new opportunity and the old roles; HISTORY, begun after, reads the
  // roles again. Told apart here, and read again by the caller (`StaleRolesError`).
  if (JSON.stringify(row.roles ?? null) !== JSON.stringify(more?.roles ?? null)) throw new StaleRolesError(id);
  const roles = (row.roles ?? []).map(([contactId, role]): ContactRole => ({ contactId: parseInt8(contactId), role }));
  const contacts = new Map((row.contacts ?? []).map((c) => [parseInt8(c[0]), contactFromJson(c)]));
  const sent = new Map<number, Date[]>();
  for (const contactId of contacts.keys()) sent.set(contactId, []);
  for (const [contactId, at] of more?.sent ?? []) sent.get(parseInt8(contactId))?.push(instantFromJson(at));
  return {
    opportunity: toOpportunity(row), contacts, roles,
    activities: (more?.activities ?? []).map(activityFromJson), history: (more?.history ?? []).map(decisionFromJson), sentToContact: sent,
  };
}

/** A transaction-local setting: the ids of the contacts LOCK locked, for HISTORY. */
const CONTACTS_SETTING = 'nudge.locked_contacts';

const LOCK = prepared(`
with locked as (
  -- Locked alone, not joined: a row changed while this waited for its lock is re-read as it now
  -- is, where a join's condition would be checked against the stage it had before, and the row
  -- dropped (a live opportunity taken for a deleted one).
  select * from opportunities where id = $1 for share
), o as (
  select o.id, o.title, o.amount, o.currency, o.closing_date, o.stage, o.primary_contact_id, o.owner_email,
         o.stage_entered_at, o.created_at, o.updated_at,
         s.label as stage_label, s.probability as stage_probability, s.outcome as stage_outcome, s.position as stage_position
  from locked o join stages s on s.key = o.stage
), r as (
  select oc.contact_id, oc.role from opportunity_contacts oc where oc.opportunity_id = $1
), l as (
  -- A volatile function in the select list is evaluated after ORDER BY, so the locks are taken in
  -- ascending id order. The key is the one every version of the worker has used.
  select ids.id, pg_advisory_xact_lock(hashtextextended('nudge.contact.' || ids.id::text, 0)) as locked
  from (select primary_contact_id as id from o where primary_contact_id is not null union select contact_id from r) ids
  order by ids.id
), c as (
  select c.id, c.email, c.first_name, c.last_name, c.locale, c.time_zone, c.unsubscribed_at, c.bounced_at
  from contacts c
  where c.id in (select l.id from l)
  order by c.id
  for share
)
select o.*,
  (select json_agg(json_build_array(r.contact_id::text, r.role) order by r.contact_id, r.role) from r) as roles,
  (select json_agg(json_build_array(${contactJson('c')}) order by c.id) from c) as contacts,
  -- For HISTORY, which runs right behind this statement (not after its answer): the contacts
  -- locked here, until the transaction ends.
  set_config('${CONTACTS_SETTING}', coalesce((select string_agg(l.id::text, ',') from l), ''), true) is not null as noted
from o`);

type LockedRow = OpportunityRow & {
  roles: [string, string][] | null;
  contacts: ContactJson[] | null;
};

/**
 * $1 the opportunity; with `sent`, $2 the frequency cap's start: the sends since then to the
 * contacts LOCK locked (`CONTACTS_SETTING`).
 */
function historyQuery(sent: boolean, activities: boolean): string {
  const key = (sent ? 2 : 0) + (activities ? 1 : 0);
  return (HISTORY[key] ??= prepared(`
select
  (select json_agg(json_build_array(oc.contact_id::text, oc.role) order by oc.contact_id, oc.role)
   from opportunity_contacts oc where oc.opportunity_id = $1) as roles,
  (select json_agg(json_build_array(${decisionJson('d')}) order by d.id)
   from deliveries d where d.opportunity_id = $1) as history,
  ${sent ? `(select json_agg(json_build_array(d.contact_id::text, ${ms('d.decided_at')}) order by d.decided_at)
   from deliveries d
   where d.contact_id = any(string_to_array(nullif(current_setting('${CONTACTS_SETTING}', true), ''), ',')::bigint[])
     and d.status in ('sent', 'unknown') and d.decided_at > $2::timestamptz)` : 'null::json'} as sent,
  ${activities ? `(select json_agg(json_build_array(${activityJson('a')}))
   from activities a where a.opportunity_id = $1 and a.kind in ('call', 'task'))` : 'null::json'} as activities`));
}

const HISTORY: string[] = [];

interface HistoryRow {
  roles: [string, string][] | null;
  history: DecisionJson[] | null;
  sent: SentJson[] | null;
  activities: ActivityJson[] | null;
}
