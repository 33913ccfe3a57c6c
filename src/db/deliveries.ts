/**
 * The decision log. Every write here is idempotent: the unique indexes of the initial migration
 * (`deliveries_spent`, `deliveries_once_per_reason`) turn a second identical decision into a
 * no-op, whatever the queue did.
 */
import { prepared, type Db } from './database.ts';
import type { DeliveriesTable } from './schema.ts';
import { CompiledQuery, sql, type Insertable, type Selectable } from 'kysely';

export type DeliveryRow = Selectable<DeliveriesTable>;
export type NewDelivery = Insertable<DeliveriesTable>;

/** Writes a suppression or a failure that spends nothing. Returns false when it was already written. */
export async function recordDecision(db: Db, row: NewDelivery): Promise<boolean> {
  const inserted = await db.insertInto('deliveries').values(row)
    .onConflict((oc) => oc.doNothing()).returning('id').executeTakeFirst();
  return inserted !== undefined;
}

/** What a claim writes: the decision to send, before its outcome. */
export type ClaimRow = Required<Pick<NewDelivery, 'opportunity_id' | 'step_id' | 'contact_id' | 'recipient' | 'due_at' | 'decided_at'
  | 'closing_date' | 'occurrence' | 'message_id' | 'template' | 'transport'>>;

/**
 * Claims a send at handover, once the SMTP server has the message's body and before its final
 * dot: a row with status `unknown`, claimed and handed over now. Returns its id, or null when the
 * step is already spent for this recipient (another worker, a re-run, a duplicate job). Its
 * COMMIT goes out before the dot, so a process that dies after this leaves `unknown`, never a
 * second email. A prepared statement: one runs for every send.
 */
export async function claimSend(db: Db, row: ClaimRow): Promise<number | null> {
  const { rows: [inserted] } = await db.executeQuery<{ id: number }>(CompiledQuery.raw(CLAIM, claimValues(row)));
  return inserted?.id ?? null;
}

/** A claim's values, in the order of CLAIM's columns (RECLAIM's after its id). */
function claimValues(row: ClaimRow): unknown[] {
  return [
    row.opportunity_id, row.step_id, row.contact_id, row.recipient, row.due_at, row.decided_at,
    row.closing_date, row.occurrence, row.message_id, row.template, row.transport,
  ];
}

/**
 * The claim's transaction commits durably whatever the server's `synchronous_commit` (a DBA may
 * turn it off for the CRM's sake): PostgreSQL would otherwise acknowledge the COMMIT before its
 * record reached the disk, and a crash right after would take the claim of an email that went,
 * which the next scan would send again. `off` becomes `on` for this transaction only
 * (`set_config(…, true)`); any other setting is durable on this server already and is kept. Set in
 * the claim's own statement: no statement more, and through a transaction-pooling PgBouncer too.
 */
const DURABLE = `(select set_config('synchronous_commit',
  case current_setting('synchronous_commit') when 'off' then 'on' else current_setting('synchronous_commit') end, true)) as durable`;

/** The rows that spend a step: the predicate of the unique index `deliveries_spent`. */
const SPENDS = `(status in ('sent', 'unknown') or (status = 'failed' and reason = 'smtp_rejected'))`;

/**
 * Only a claim of the same send (`deliveries_spent`) makes a claim do nothing. Any other clash
 * (an id given twice) is an error, never taken for a spent step.
 */
const SPENT = `on conflict (opportunity_id, step_id, occurrence, recipient) where ${SPENDS} do nothing`;

const CLAIM = prepared(`
insert into deliveries (opportunity_id, step_id, contact_id, recipient, due_at, decided_at, closing_date, occurrence,
  message_id, template, transport, status, reason, claimed_at, handed_at)
select $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'unknown', null, now(), now() from ${DURABLE}
${SPENT}
returning id`);

/**
 * A new id for a claim written again (`reclaimSend`), drawn from the table's own sequence, not
 * the lost claim's id written back: a sequence value drawn by a transaction that did not commit
 * (the claim's, lost in a crash) can be given again once PostgreSQL recovers, so a row written
 * under it by hand could take the id the sequence gives the next claim. A value drawn here (which
 * may be that same id, given again: no row holds it) is made durable by the COMMIT of the row
 * written under it.
 */
export async function newDeliveryId(db: Db): Promise<number> {
  const { rows: [drawn] } = await db.executeQuery<{ id: number }>(CompiledQuery.raw(`select nextval(pg_get_serial_sequence('deliveries', 'id')) as id`));
  return drawn!.id;
}

/**
 * Writes again a claim whose transaction did not commit, under an id of `newDeliveryId`. Returns
 * null when the step is taken (a claim of the same send: this one's, committed after all, or
 * another worker's).
 */
export async function reclaimSend(db: Db, id: number, row: ClaimRow): Promise<number | null> {
  const { rows: [inserted] } = await db.executeQuery<{ id: number }>(CompiledQuery.raw(RECLAIM, [id, ...claimValues(row)]));
  return inserted?.id ?? null;
}

const RECLAIM = `
insert into deliveries (id, opportunity_id, step_id, contact_id, recipient, due_at, decided_at, closing_date, occurrence,
  message_id, template, transport, status, reason, claimed_at, handed_at)
select $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'unknown', null, now(), now() from ${DURABLE}
${SPENT}
returning id`;

/**
 * Releases claims never handed to SMTP and older than `leaseMs` (real clock): their worker died
 * between the claim and the message. The next scan enqueues those steps again. Claims are now
 * written already handed over (`claimSend`); only rows left by older versions, which claimed
 * first and marked the handover later, can match.
 */
export async function releaseStaleClaims(db: Db, leaseMs: number): Promise<number> {
  const r = await db.deleteFrom('deliveries').where('status', '=', 'unknown').where('handed_at', 'is', null)
    .where('claimed_at', '<', sql<Date>`now() - make_interval(secs => ${leaseMs / 1000})`).executeTakeFirst();
  return Number(r.numDeletedRows);
}

/** A prepared statement: one runs for every send. */
export async function markSent(db: Db, id: number, detail: string | null): Promise<void> {
  await db.executeQuery(CompiledQuery.raw(MARK_SENT, [id, detail]));
}

const MARK_SENT = prepared(`update deliveries set status = 'sent', reason = null, detail = $2 where id = $1`);

export async function markRejected(db: Db, id: number, detail: string): Promise<void> {
  await db.updateTable('deliveries').set({ status: 'failed', reason: 'smtp_rejected', detail }).where('id', '=', id).execute();
}

/** The outcome is not known (connection lost after the message was handed over): keep `unknown`. */
export async function markUnknown(db: Db, id: number, detail: string): Promise<void> {
  await db.updateTable('deliveries').set({ detail }).where('id', '=', id).where('status', '=', 'unknown').execute();
}

/** The server refused for now (4xx, connection refused): nothing was accepted, the claim goes. */
export async function releaseClaim(db: Db, id: number): Promise<void> {
  await db.deleteFrom('deliveries').where('id', '=', id).where('status', '=', 'unknown').execute();
}

/**
 * This send's claim, as written by the attempt that decided it: the row of its opportunity, step,
 * occurrence and recipient decided at that attempt's instant (`decided_at`), whatever its id; or
 * null when there is none (never written, or released). For a claim whose COMMIT went unanswered,
 * whether it committed, or was written again since. Not by id alone: after a crash PostgreSQL may
 * give the id of a claim that did not commit to another row. Not by the send alone: another
 * attempt's claim of the same send (another worker's, the job taken again) may still be in flight.
 */
export async function ownClaim(db: Db, row: Pick<ClaimRow, 'opportunity_id' | 'step_id' | 'occurrence' | 'recipient' | 'decided_at'>): Promise<Pick<DeliveryRow, 'id' | 'status' | 'detail'> | null> {
  return (await db.selectFrom('deliveries').select(['id', 'status', 'detail'])
    .where('opportunity_id', '=', row.opportunity_id).where('step_id', '=', row.step_id)
    .where('occurrence', '=', row.occurrence).where('recipient', '=', row.recipient)
    .where('decided_at', '=', row.decided_at)
    .where(sql.raw<boolean>(SPENDS))
    .executeTakeFirst()) ?? null;
}

export async function listDeliveries(db: Db, opportunityId: number): Promise<DeliveryRow[]> {
  return db.selectFrom('deliveries').selectAll().where('opportunity_id', '=', opportunityId).orderBy('id').execute();
}
