/**
 * The worker's snapshot of one opportunity, read under locks that last until its transaction ends
 * (the send path of `deliver`). The scan's batch reader, `loadSnapshots`, takes no locks; this one
 * reads one opportunity in as few round trips as the locks allow:
 *
 * 1. the opportunity FOR SHARE, with its stage and its roles (one query);
 * 2. each contact's advisory lock, all in one statement, in ascending id order: it serialises
 *    decisions about the same person (the frequency cap counts what the other decision claimed),
 *    and one order for everybody means two decisions about overlapping contacts cannot deadlock;
 * 3. the contacts FOR SHARE, whose rows are the ones decided on (one query);
 * 4. the decision history, and when asked for, the sends to these contacts and the activities.
 *
 * A CRM change to stage, closing date, contact or consent either committed before these reads or
 * waits until the transaction ends.
 */
import { sql } from 'kysely';
import type { Db } from './database.ts';
import { toOpportunity, type OpportunityRow } from './opportunities.ts';
import { toContact, type SnapshotNeeds } from './snapshots.ts';
import type { Activity, Contact, ContactRole, PastDecision, Reason, Snapshot } from '../journey/types.ts';

/** Inside a transaction: null when the opportunity no longer exists. */
export async function lockAndLoadSnapshot(trx: Db, id: number, needs: SnapshotNeeds): Promise<Snapshot | null> {
  const found = await lockOpportunity(trx, id);
  if (!found) return null;
  const { row, roles } = found;
  const contactIds = [...new Set([row.primary_contact_id, ...roles.map((r) => r.contactId)])].filter((c): c is number => c !== null);
  const contacts = await lockContacts(trx, contactIds);
  const [history, sent, activities] = await Promise.all([
    loadHistory(trx, id),
    needs.sentSince && contacts.size > 0 ? loadSentToContacts(trx, [...contacts.keys()], needs.sentSince) : new Map<number, Date[]>(),
    needs.activities ? loadActivities(trx, id) : [],
  ]);
  const sentToContact = new Map<number, Date[]>();
  for (const contactId of contacts.keys()) sentToContact.set(contactId, sent.get(contactId) ?? []);
  return { opportunity: toOpportunity(row), contacts, roles, activities, history, sentToContact };
}

/** The opportunity row, share-locked, with its stage; its roles come along, one row per role. */
async function lockOpportunity(trx: Db, id: number): Promise<{ row: OpportunityRow; roles: ContactRole[] } | null> {
  const rows = await trx.selectFrom('opportunities as o')
    .innerJoin('stages as s', 's.key', 'o.stage')
    .leftJoin('opportunity_contacts as oc', 'oc.opportunity_id', 'o.id')
    .select([
      'o.id', 'o.title', 'o.amount', 'o.currency', 'o.closing_date', 'o.stage', 'o.primary_contact_id',
      'o.owner_email', 'o.stage_entered_at', 'o.created_at', 'o.updated_at',
      's.label as stage_label', 's.probability as stage_probability', 's.outcome as stage_outcome',
      's.position as stage_position', 'oc.contact_id as role_contact_id', 'oc.role as role',
    ])
    .where('o.id', '=', id)
    .orderBy('oc.contact_id')
    .forShare('o')
    .execute();
  const first = rows[0];
  if (!first) return null;
  const roles = rows.flatMap((r) => (r.role_contact_id === null || r.role === null ? [] : [{ contactId: r.role_contact_id, role: r.role }]));
  return { row: first as OpportunityRow, roles };
}

/** Advisory locks, then the rows FOR SHARE; returns the contacts that exist, by id. */
async function lockContacts(trx: Db, ids: number[]): Promise<Map<number, Contact>> {
  if (ids.length === 0) return new Map();
  // A volatile function in the select list is evaluated after ORDER BY (PostgreSQL 9.6 and
  // later), so the locks are taken in ascending id order. The key is the one every version of
  // the worker has used.
  await sql`select pg_advisory_xact_lock(hashtextextended('nudge.contact.' || id::text, 0))
    from unnest(${ids}::bigint[]) as t(id) order by id`.execute(trx);
  const rows = await trx.selectFrom('contacts').selectAll().where('id', 'in', ids).orderBy('id').forShare().execute();
  return new Map(rows.map((r) => [r.id, toContact(r)]));
}

async function loadHistory(trx: Db, opportunityId: number): Promise<PastDecision[]> {
  const rows = await trx.selectFrom('deliveries')
    .select(['step_id', 'occurrence', 'recipient', 'contact_id', 'status', 'reason', 'closing_date', 'decided_at'])
    .where('opportunity_id', '=', opportunityId).orderBy('id').execute();
  return rows.map((r) => ({
    stepId: r.step_id, occurrence: r.occurrence, recipient: r.recipient, contactId: r.contact_id,
    status: r.status, reason: r.reason as Reason | null, closingDate: r.closing_date, decidedAt: r.decided_at,
  }));
}

/** Emails sent (or of unknown outcome) to these contacts since `since`: the frequency cap's count. */
async function loadSentToContacts(trx: Db, contactIds: number[], since: Date): Promise<Map<number, Date[]>> {
  const rows = await trx.selectFrom('deliveries').select(['contact_id', 'decided_at'])
    .where('contact_id', 'in', contactIds).where('status', 'in', ['sent', 'unknown'])
    .where('decided_at', '>', since).execute();
  const out = new Map<number, Date[]>();
  for (const r of rows) {
    const id = r.contact_id as number;
    out.set(id, [...(out.get(id) ?? []), r.decided_at]);
  }
  return out;
}

async function loadActivities(trx: Db, opportunityId: number): Promise<Activity[]> {
  const rows = await trx.selectFrom('activities').select(['id', 'kind', 'due_at', 'done_at'])
    .where('opportunity_id', '=', opportunityId).where('kind', 'in', ['call', 'task']).execute();
  return rows.map((r) => ({ id: r.id, kind: r.kind, dueAt: r.due_at, doneAt: r.done_at }));
}
