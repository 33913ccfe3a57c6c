/**
 * Loads `Snapshot`s: an opportunity with its contacts, roles, activities and decision history, in
 * a fixed number of queries per page whatever the page size.
 */
import { sql } from 'kysely';
import type { Db } from './database.ts';
import { findOpportunity, toOpportunity, type OpportunityRow } from './opportunities.ts';
import type { TriageDecision } from '../journey/triage.ts';
import type {
  Activity, Contact, ContactRole, IsoDate, PastDecision, Reason, Snapshot,
} from '../journey/types.ts';

export interface SnapshotNeeds {
  /** Load the contacts with a role (only steps to a role need them; the primary contact is always loaded). @defaultValue true */
  roles?: boolean;
  /** Load activities (only steps with skipIfRecentActivity need them). */
  activities: boolean;
  /** Load emails sent to the contacts since this instant (frequency cap); null: don't. */
  sentSince: Date | null;
}

export async function loadSnapshots(db: Db, rows: readonly OpportunityRow[], needs: SnapshotNeeds): Promise<Snapshot[]> {
  if (rows.length === 0) return [];
  const ids = rows.map((r) => r.id);
  const roles = needs.roles === false ? []
    : await db.selectFrom('opportunity_contacts').selectAll().where('opportunity_id', '=', anyOf(ids)).execute();
  const contactIds = new Set<number>(roles.map((r) => r.contact_id));
  for (const r of rows) if (r.primary_contact_id !== null) contactIds.add(r.primary_contact_id);
  const [contacts, activities, history, sent] = await Promise.all([
    loadContacts(db, [...contactIds]),
    needs.activities ? loadActivities(db, ids) : Promise.resolve(new Map<number, Activity[]>()),
    loadHistory(db, ids),
    needs.sentSince ? loadSentToContacts(db, [...contactIds], needs.sentSince) : Promise.resolve(new Map<number, Date[]>()),
  ]);
  const rolesByOpportunity = groupBy(roles, (r) => r.opportunity_id, (r): ContactRole => ({ contactId: r.contact_id, role: r.role }));
  return rows.map((row) => {
    const myRoles = rolesByOpportunity.get(row.id) ?? [];
    const mine = new Map<number, Contact>();
    for (const id of [row.primary_contact_id, ...myRoles.map((r) => r.contactId)]) {
      const c = id === null ? undefined : contacts.get(id);
      if (c) mine.set(c.id, c);
    }
    const sentToContact = new Map<number, Date[]>();
    for (const id of mine.keys()) sentToContact.set(id, sent.get(id) ?? []);
    return {
      opportunity: toOpportunity(row), contacts: mine, roles: myRoles,
      activities: activities.get(row.id) ?? [], history: history.get(row.id) ?? [], sentToContact,
    };
  });
}

/**
 * One opportunity's snapshot, or null when it no longer exists; no locks (explain, preview,
 * send-test). The worker's send path reads under locks: `lockAndLoadSnapshot`.
 */
export async function loadSnapshot(db: Db, id: number, needs: SnapshotNeeds): Promise<Snapshot | null> {
  const row = await findOpportunity(db, id);
  if (!row) return null;
  const [snapshot] = await loadSnapshots(db, [row], needs);
  return snapshot ?? null;
}

export function toContact(row: {
  id: number; email: string | null; first_name: string | null; last_name: string | null; locale: string;
  time_zone: string | null; unsubscribed_at: Date | null; bounced_at: Date | null;
}): Contact {
  return {
    id: row.id, email: row.email, firstName: row.first_name, lastName: row.last_name, locale: row.locale,
    timeZone: row.time_zone, unsubscribedAt: row.unsubscribed_at, bouncedAt: row.bounced_at,
  };
}

async function loadContacts(db: Db, ids: number[]): Promise<Map<number, Contact>> {
  if (ids.length === 0) return new Map();
  const rows = await db.selectFrom('contacts').selectAll().where('id', '=', anyOf(ids)).execute();
  return new Map(rows.map((r) => [r.id, toContact(r)]));
}

async function loadActivities(db: Db, ids: number[]): Promise<Map<number, Activity[]>> {
  const rows = await db.selectFrom('activities').select(['id', 'opportunity_id', 'kind', 'due_at', 'done_at'])
    .where('opportunity_id', '=', anyOf(ids)).where('kind', 'in', ['call', 'task']).execute();
  return groupBy(rows, (r) => r.opportunity_id, (r) => ({ id: r.id, kind: r.kind, dueAt: r.due_at, doneAt: r.done_at }));
}

async function loadHistory(db: Db, ids: number[]): Promise<Map<number, PastDecision[]>> {
  const rows = await db.selectFrom('deliveries')
    .select(['opportunity_id', 'step_id', 'occurrence', 'recipient', 'contact_id', 'status', 'reason', 'closing_date', 'decided_at'])
    .where('opportunity_id', '=', anyOf(ids)).orderBy('id').execute();
  return groupBy(rows, (r) => r.opportunity_id, (r): PastDecision => ({ ...triageDecision(r), decidedAt: r.decided_at }));
}

async function loadSentToContacts(db: Db, contactIds: number[], since: Date): Promise<Map<number, Date[]>> {
  if (contactIds.length === 0) return new Map();
  const rows = await db.selectFrom('deliveries').select(['contact_id', 'decided_at'])
    .where('contact_id', '=', anyOf(contactIds)).where('status', 'in', ['sent', 'unknown'])
    .where('decided_at', '>', since).execute();
  return groupBy(rows, (r) => r.contact_id as number, (r) => r.decided_at);
}

/**
 * For triage (`src/journey/triage.ts`): what was decided about the opportunities of one closing-date
 * page, at their current closing dates. The page runs in (closing_date, id) order from `first` to
 * `last`, so their decisions are one range of `deliveries_by_closing_date`, read from the index
 * alone. Decisions made under another closing date are left out, which triage allows.
 */
export async function decisionsAtClosingDates(
  db: Db, first: { closingDate: IsoDate; id: number }, last: { closingDate: IsoDate; id: number },
): Promise<Map<number, TriageDecision[]>> {
  const rows = await db.selectFrom('deliveries').select(TRIAGE_COLUMNS)
    .where(sql<boolean>`(closing_date, opportunity_id) >= (${first.closingDate}::date, ${first.id}::bigint)`)
    .where(sql<boolean>`(closing_date, opportunity_id) <= (${last.closingDate}::date, ${last.id}::bigint)`)
    .execute();
  return groupBy(rows, (r) => r.opportunity_id, triageDecision);
}

/** For triage: the decisions about `ids` (a stage-entered page), without the columns triage does not read. */
export async function decisionsAbout(db: Db, ids: readonly number[]): Promise<Map<number, TriageDecision[]>> {
  if (ids.length === 0) return new Map();
  const rows = await db.selectFrom('deliveries').select(TRIAGE_COLUMNS).where('opportunity_id', '=', anyOf(ids)).execute();
  return groupBy(rows, (r) => r.opportunity_id, triageDecision);
}

const TRIAGE_COLUMNS = ['opportunity_id', 'step_id', 'occurrence', 'recipient', 'contact_id', 'status', 'reason', 'closing_date'] as const;

function triageDecision(r: {
  step_id: string; occurrence: string; recipient: string; contact_id: number | null; status: string; reason: string | null; closing_date: string | null;
}): TriageDecision {
  return {
    stepId: r.step_id, occurrence: r.occurrence, recipient: r.recipient, contactId: r.contact_id,
    status: r.status as TriageDecision['status'], reason: r.reason as Reason | null, closingDate: r.closing_date,
  };
}

/** `= any($1)` with one array parameter: a page's ids cost one bind value, not one each. */
function anyOf(ids: readonly number[]) {
  return sql<number>`any(${[...ids]}::bigint[])`;
}

function groupBy<R, V>(rows: readonly R[], key: (r: R) => number, value: (r: R) => V): Map<number, V[]> {
  const out = new Map<number, V[]>();
  for (const r of rows) {
    const k = key(r);
    const list = out.get(k);
    if (list) list.push(value(r));
    else out.set(k, [value(r)]);
  }
  return out;
}
