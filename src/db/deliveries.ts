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
 * which the next scan would send again. Set for this transaction only (`set_config(…, true)`),
 * in the claim's own statement: no statement more, and through a transaction-pooling PgBouncer
 * too.
 */
const DURABLE = `(select set_config('synchronous_commit', 'on', true)) as durable`;

const CLAIM = prepared(`
insert into deliveries (opportunity_id, step_id, contact_id, recipient, due_at, decided_at, closing_date, occurrence,
  message_id, template, transport, status, reason, claimed_at, handed_at)
select $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'unknown', null, now(), now() from ${DURABLE}
on conflict do nothing
returning id`);

/**
 * A new id for a claim written again (`reclaimSend`), drawn from the table's own sequence. Never
 * the lost claim's own id: a sequence value drawn by a transaction that did not commit (the
 * claim's, lost in a crash) can be given again once PostgreSQL recovers, to another row; a row
 * written under it would then collide with a later claim. A value drawn here is made durable by
 * the COMMIT of the row written under it.
 */
export async function newDeliveryId(db: Db): Promise<number> {
  const { rows: [drawn] } = await db.executeQuery<{ id: number }>(CompiledQuery.raw(`select nextval(pg_get_serial_sequence('deliveries', 'id')) as id`));
  return Number(drawn!.id);
}

/**
 * Writes again a claim whose transaction did not commit, under an id of `newDeliveryId`: if this
 * write's own answer is lost, `claimState` still finds it by that id. Returns null when the step
 * is taken (another claim of it).
 */
export async function reclaimSend(db: Db, id: number, row: ClaimRow): Promise<number | null> {
  const { rows: [inserted] } = await db.executeQuery<{ id: number }>(CompiledQuery.raw(RECLAIM, [id, ...claimValues(row)]));
  return inserted?.id ?? null;
}

const RECLAIM = `
insert into deliveries (id, opportunity_id, step_id, contact_id, recipient, due_at, decided_at, closing_date, occurrence,
  message_id, template, transport, status, reason, claimed_at, handed_at)
select $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'unknown', null, now(), now() from ${DURABLE}
on conflict do nothing
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
 * The status and detail of this send's claim under this id, or null when there is none (never
 * written, or released). For a claim whose COMMIT went unanswered, whether it committed. The id
 * alone does not tell: after a crash PostgreSQL may give the id of a claim that did not commit to
 * another row, another send's claim. The row must be this send's too: its opportunity, step,
 * occurrence and recipient.
 */
export async function claimState(db: Db, id: number, row: Pick<ClaimRow, 'opportunity_id' | 'step_id' | 'occurrence' | 'recipient'>): Promise<Pick<DeliveryRow, 'status' | 'detail'> | null> {
  return (await db.selectFrom('deliveries').select(['status', 'detail']).where('id', '=', id)
    .where('opportunity_id', '=', row.opportunity_id).where('step_id', '=', row.step_id)
    .where('occurrence', '=', row.occurrence).where('recipient', '=', row.recipient).executeTakeFirst()) ?? null;
}

export async function listDeliveries(db: Db, opportunityId: number): Promise<DeliveryRow[]> {
  return db.selectFrom('deliveries').selectAll().where('opportunity_id', '=', opportunityId).orderBy('id').execute();
}
