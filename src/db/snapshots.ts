/**
 * Loads `Snapshot`s: an opportunity with its contacts, roles, activities and decision history, in
 * one statement per page whatever the page size.
 */
import { CompiledQuery, sql, type RawBuilder } from 'kysely';
import { executePrepared, parseInt8, prepared, type Db } from './database.ts';
import {
  activityFromJson, activityJson, contactFromJson, contactJson, decisionFromJson, decisionJson, ms,
  instantFromJson, type ActivityJson, type ContactJson, type DecisionJson, type SentJson,
} from './snapshot-json.ts';
import { findOpportunity, toDecisionOpportunity, toOpportunity, type ScanRow } from './opportunities.ts';
import type { TriageDecision } from '../journey/triage.ts';
import type {
  Contact, ContactRole, DecisionOpportunity, DecisionSnapshot, IsoDate, Reason, Snapshot,
} from '../journey/types.ts';

export interface SnapshotNeeds {
  /** Load the contacts with a role (only steps to a role need them; the primary contact is always loaded). @defaultValue true */
  roles?: boolean;
  /** Load activities (only steps with skipIfRecentActivity need them). */
  activities: boolean;
  /** Load emails sent to the contacts since this instant (frequency cap); null: don't. */
  sentSince: Date | null;
}

/** The snapshots of a scan page's rows (opened by triage): enough to decide, not to render. */
export function loadSnapshots(db: Db, rows: readonly ScanRow[], needs: SnapshotNeeds): Promise<DecisionSnapshot[]> {
  return loadSnapshotsOf(db, rows, needs, toDecisionOpportunity);
}

async function loadSnapshotsOf<R extends ScanRow, O extends DecisionOpportunity>(
  db: Db, rows: readonly R[], needs: SnapshotNeeds, convert: (row: R) => O,
): Promise<Snapshot<O>[]> {
  if (rows.length === 0) return [];
  const ids = rows.map((r) => r.id);
  const primaries = [...new Set(rows.flatMap((r) => (r.primary_contact_id === null ? [] : [r.primary_contact_id])))];
  const roles = needs.roles !== false;
  const { rows: [found] } = await db.executeQuery<BatchRow>(needs.sentSince
    ? CompiledQuery.raw(batchQuery(roles, needs.activities, true), [ids, primaries, needs.sentSince])
    : CompiledQuery.raw(batchQuery(roles, needs.activities, false), [ids, primaries]));
  const rolesByOpportunity = groupBy(found?.roles ?? [], ([opportunityId]) => parseInt8(opportunityId),
    ([, contactId, role]): ContactRole => ({ contactId: parseInt8(contactId), role }));
  const contacts = new Map((found?.contacts ?? []).map((c) => [parseInt8(c[0]), contactFromJson(c)]));
  const history = new Map((found?.history ?? []).map(([id, list]) => [parseInt8(id), list.map(decisionFromJson)]));
  const activities = new Map((found?.activities ?? []).map(([id, list]) => [parseInt8(id), list.map(activityFromJson)]));
  const sent = groupBy(found?.sent ?? [], ([contactId]) => parseInt8(contactId), ([, at]) => instantFromJson(at));
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
      opportunity: convert(row), contacts: mine, roles: myRoles,
      activities: activities.get(row.id) ?? [], history: history.get(row.id) ?? [], sentToContact,
    };
  });
}

/**
 * One statement per page (a prepared one, `prepared`): $1 the opportunities, $2 their primary
 * contacts, with `sent` $3 the frequency cap's start. Everything comes as JSON in one row
 * (`snapshot-json.ts`), history and activities grouped by opportunity; the contacts are the
 * primary ones and, with `roles`, those with a role.
 */
function batchQuery(roles: boolean, activities: boolean, sent: boolean): string {
  const key = (roles ? 4 : 0) + (activities ? 2 : 0) + (sent ? 1 : 0);
  return (BATCH[key] ??= prepared(`
with cids as (
  select unnest($2::bigint[]) as id
  ${roles ? 'union select oc.contact_id from opportunity_contacts oc where oc.opportunity_id = any($1::bigint[])' : ''}
)
select
  ${roles ? `(select json_agg(json_build_array(oc.opportunity_id::text, oc.contact_id::text, oc.role))
   from opportunity_contacts oc where oc.opportunity_id = any($1::bigint[]))` : 'null::json'} as roles,
  (select json_agg(json_build_array(${contactJson('c')})) from contacts c where c.id in (select id from cids)) as contacts,
  (select json_agg(json_build_array(h.opportunity_id::text, h.list)) from (
     select d.opportunity_id, json_agg(json_build_array(${decisionJson('d')}) order by d.id) as list
     from deliveries d where d.opportunity_id = any($1::bigint[]) group by d.opportunity_id) h) as history,
  ${activities ? `(select json_agg(json_build_array(h.opportunity_id::text, h.list)) from (
     select a.opportunity_id, json_agg(json_build_array(${activityJson('a')})) as list
     from activities a where a.opportunity_id = any($1::bigint[]) and a.kind in ('call', 'task') group by a.opportunity_id) h)` : 'null::json'} as activities,
  ${sent ? `(select json_agg(json_build_array(d.contact_id::text, ${ms('d.decided_at')}) order by d.decided_at)
   from deliveries d where d.contact_id in (select id from cids) and d.status in ('sent', 'unknown')
     and d.decided_at > $3::timestamptz)` : 'null::json'} as sent`));
}

const BATCH: string[] = [];

interface BatchRow {
  roles: [opportunityId: string, contactId: string, role: string][] | null;
  contacts: ContactJson[] | null;
  history: [opportunityId: string, DecisionJson[]][] | null;
  activities: [opportunityId: string, ActivityJson[]][] | null;
  sent: SentJson[] | null;
}

/**
 * One opportunity's snapshot, or null when it no longer exists; no locks (explain, preview,
 * send-test). The worker's send path reads under locks: `lockAndLoadSnapshot`.
 */
export async function loadSnapshot(db: Db, id: number, needs: SnapshotNeeds): Promise<Snapshot | null> {
  const row = await findOpportunity(db, id);
  if (!row) return null;
  const [snapshot] = await loadSnapshotsOf(db, [row], needs, toOpportunity);
  return snapshot ?? null;
}

/**
 * For triage (`src/journey/triage.ts`): what was decided about the opportunities of one closing-date
 * page, at their current closing dates. The page runs in (closing_date, id) order from `first` to
 * `last`, so their decisions are one range of `deliveries_by_closing_date`, read from the index
 * alone. Decisions made under another closing date are left out, which triage allows.
 *
 * The range ends on plain conditions, not on a row comparison: PostgreSQL (before 18) ends an
 * index scan only on a row comparison's first column, so `(closing_date, opportunity_id) <= last`
 * read on to the end of the last closing day, on every page. A busy day's pages each read most of
 * its decisions: of a million opportunities' scan, 833 index pages for 2,118 decisions where 43
 * hold them, and the statement took as much of PostgreSQL's time as reading the pages themselves.
 * A page within one day is one range of that day; a page across days, the rest of its first day,
 * any day between, then the start of its last. (As a row comparison, its first part's estimate
 * counts the whole first day, which a table whose decisions are mostly of that day reads by a
 * sequential scan.)
 */
export async function decisionsAtClosingDates(
  db: Db, first: { closingDate: IsoDate; id: number }, last: { closingDate: IsoDate; id: number },
): Promise<Map<number, TriageDecision[]>> {
  if (first.closingDate === last.closingDate) {
    return packedDecisions(db, [sql<boolean>`closing_date = ${first.closingDate}::date
      and opportunity_id >= ${first.id}::bigint and opportunity_id <= ${last.id}::bigint`]);
  }
  return packedDecisions(db, [
    sql<boolean>`closing_date = ${first.closingDate}::date and opportunity_id >= ${first.id}::bigint`,
    sql<boolean>`closing_date > ${first.closingDate}::date and closing_date < ${last.closingDate}::date`,
    sql<boolean>`closing_date = ${last.closingDate}::date and opportunity_id <= ${last.id}::bigint`,
  ]);
}

/** For triage: the decisions about `ids` (a stage-entered page), without the columns triage does not read. */
export async function decisionsAbout(db: Db, ids: readonly number[]): Promise<Map<number, TriageDecision[]>> {
  if (ids.length === 0) return new Map();
  return packedDecisions(db, [sql<boolean>`opportunity_id = ${anyOf(ids)}`]);
}

/**
 * A page's decisions come as one text, fields joined by U+001F and decisions by U+001E, the free
 * text (the address) last: a page of hundreds of decisions is one value to decode instead of eight
 * per decision, which took the scan more time than reading the opportunities themselves. The count
 * comes along. A separator inside a value (an address can hold anything the CRM stores; the schema
 * allows it in the other text columns too, though Nudge writes none) shows when decoding: a record
 * separator splits the text into more records than counted, a field separator makes a record of
 * more than eight fields. Either way that page is read again as rows. (Checking each row in SQL
 * instead cost PostgreSQL a quarter of this query's time, on the scan's bottleneck.)
 */
async function packedDecisions(db: Db, ranges: readonly RawBuilder<boolean>[]): Promise<Map<number, TriageDecision[]>> {
  const query = db.selectFrom(decisionsIn(db, ranges).as('d')).select([
    sql<number>`count(*)::int`.as('count'),
    sql<string | null>`string_agg(opportunity_id::text || chr(31) || step_id || chr(31) || occurrence || chr(31)
      || coalesce(contact_id::text, '') || chr(31) || status || chr(31) || coalesce(reason, '') || chr(31)
      || coalesce(closing_date::text, '') || chr(31) || recipient, chr(30))`.as('packed'),
  ]);
  const { count, packed } = (await executePrepared(db, query))[0]!;
  const decisions = unpackDecisions(packed, count);
  if (decisions) return decisions;
  const rows = await db.selectFrom(decisionsIn(db, ranges).as('d')).selectAll().execute();
  return groupBy(rows, (r) => r.opportunity_id, triageDecision);
}

/** The triage columns of the decisions in each of `ranges` (conditions on `deliveries`), one after another. */
function decisionsIn(db: Db, ranges: readonly RawBuilder<boolean>[]) {
  const [head, ...rest] = ranges.map((where) => db.selectFrom('deliveries').select(TRIAGE_COLUMNS).where(where));
  return rest.reduce((all, next) => all.unionAll(next), head!);
}

/** The decisions of `packedDecisions`' text by opportunity, or null when they are not `count` records of eight fields. */
export function unpackDecisions(packed: string | null, count: number): Map<number, TriageDecision[]> | null {
  const out = new Map<number, TriageDecision[]>();
  if (packed === null) return count === 0 ? out : null;
  const records = packed.split(RECORD);
  if (records.length !== count) return null;
  for (const record of records) {
    // Seven fields, then the address: sliced in place (no array per record; a scan reads 300,000).
    const a = record.indexOf(FIELD);
    const b = record.indexOf(FIELD, a + 1);
    const c = record.indexOf(FIELD, b + 1);
    const d = record.indexOf(FIELD, c + 1);
    const e = record.indexOf(FIELD, d + 1);
    const f = record.indexOf(FIELD, e + 1);
    const g = record.indexOf(FIELD, f + 1);
    if (a < 0 || b < 0 || c < 0 || d < 0 || e < 0 || f < 0 || g < 0) return null;
    // An eighth separator: one of the values holds it, and which one cannot be told.
    if (record.indexOf(FIELD, g + 1) >= 0) return null;
    const opportunityId = record.slice(0, a);
    const contactId = record.slice(c + 1, d);
    const reason = record.slice(e + 1, f);
    const closingDate = record.slice(f + 1, g);
    const decision: TriageDecision = {
      stepId: record.slice(a + 1, b), occurrence: record.slice(b + 1, c), recipient: record.slice(g + 1),
      contactId: contactId === '' ? null : parseInt8(contactId), status: record.slice(d + 1, e) as TriageDecision['status'],
      reason: reason === '' ? null : reason as Reason, closingDate: closingDate === '' ? null : closingDate,
    };
    const id = parseInt8(opportunityId);
    const list = out.get(id);
    if (list) list.push(decision);
    else out.set(id, [decision]);
  }
  return out;
}

const FIELD = '\x1f';
const RECORD = '\x1e';

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
