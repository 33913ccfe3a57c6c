/**
 * What the next days would bring, on today's data: the daemon's decisions replayed in time order
 * with `evaluate` (the same function the scan and the worker call), sending and writing nothing.
 *
 * Decisions only change at known instants (a due time, the end of a window or of quiet hours, a
 * local midnight after the closing date, a frequency cap freeing up), so each opportunity is
 * evaluated at those instants instead of every minute. Sends go into an in-memory history, and
 * into per-contact send lists shared by every opportunity of the contact, so spent steps and the
 * frequency cap behave as they would after real sends.
 */
import { evaluate, type StepEvaluation } from './decide.ts';
import { MinHeap } from './min-heap.ts';
import { isCustomerFacing } from './recipients.ts';
import { addDays, zonedTimeOrGapEnd } from './time.ts';
import type { DecisionSnapshot, Journey, PastDecision, SuppressionReason } from './types.ts';

/** One opportunity as read for part of the journey (the scan reads some twice, per kind of trigger). */
export interface SimulationUnit {
  snapshot: DecisionSnapshot;
  journey: Journey;
}

export type SimulationEvent =
  | { kind: 'send'; at: Date; opportunityId: number; stepId: string; dueAt: Date; recipient: string; contactId: number | null }
  | { kind: 'suppress'; at: Date; opportunityId: number; stepId: string; reason: SuppressionReason; recipient: string };

const MINUTE = 60_000;
const DAY = 86_400_000;

/**
 * Replays `units` from `from` (inclusive) to `to` (exclusive). Every unit is evaluated at `from`
 * (as the first tick would), then at each instant its decisions may change.
 */
export function simulateUnits(units: readonly SimulationUnit[], from: Date, to: Date): SimulationEvent[] {
  const sent = sharedSendLists(units);
  const state = units.map((u) => ({ ...u, snapshot: { ...u.snapshot, history: [...u.snapshot.history], sentToContact: sent } as MutableSnapshot }));
  // At equal instants, units go in the order the scan reads them (and enqueues their jobs).
  const heap = new MinHeap();
  state.forEach((_, i) => heap.push(from.getTime(), i));
  const events: SimulationEvent[] = [];
  for (let next = heap.pop(); next; next = heap.pop()) {
    const unit = state[next.value]!;
    const at = new Date(next.key);
    const evaluations = decideAt(unit, at, events);
    const later = nextInstant(evaluations, unit.journey, unit.snapshot, at);
    if (later !== null && later < to.getTime()) heap.push(later, next.value);
  }
  return events;
}

/** Applies what the scan and the workers would do at `at`; sends one at a time, as jobs do. */
function decideAt(unit: { snapshot: MutableSnapshot; journey: Journey }, at: Date, events: SimulationEvent[]): StepEvaluation[] {
  for (;;) {
    const evaluations = evaluate(unit.snapshot, unit.journey, at);
    for (const e of evaluations) {
      if (e.verdict.kind !== 'suppress' || !e.record) continue;
      unit.snapshot.history.push(decision(e, at, 'suppressed', e.verdict.reason));
      events.push({ kind: 'suppress', at, opportunityId: unit.snapshot.opportunity.id, stepId: e.step.id, reason: e.verdict.reason, recipient: e.recipient?.address ?? '' });
    }
    const sends = evaluations.filter((e) => e.verdict.kind === 'send' && e.recipient);
    const first = sends[0];
    if (!first) return evaluations;
    const contactId = first.recipient!.contact?.id ?? null;
    unit.snapshot.history.push(decision(first, at, 'sent', null));
    if (contactId !== null) unit.snapshot.sentToContact.get(contactId)!.push(at);
    events.push({ kind: 'send', at, opportunityId: unit.snapshot.opportunity.id, stepId: first.step.id, dueAt: first.due!.dueAt,
      recipient: first.recipient!.address, contactId });
    // Another send to the same person at the same instant is a job of its own: decide it again.
    if (sends.length === 1) return evaluate(unit.snapshot, unit.journey, at);
  }
}

type MutableSnapshot = Omit<DecisionSnapshot, 'history' | 'sentToContact'> & { history: PastDecision[]; sentToContact: Map<number, Date[]> };

function decision(e: StepEvaluation, at: Date, status: 'sent' | 'suppressed', reason: SuppressionReason | null): PastDecision {
  return {
    stepId: e.step.id, occurrence: e.occurrence, recipient: e.recipient?.address ?? '', contactId: e.recipient?.contact?.id ?? null,
    status, reason, closingDate: e.closingDate, decidedAt: at,
  };
}

/** One send list per contact, shared by all the contact's opportunities. */
function sharedSendLists(units: readonly SimulationUnit[]): Map<number, Date[]> {
  const out = new Map<number, Date[]>();
  for (const u of units) {
    for (const [id, dates] of u.snapshot.sentToContact) if (!out.has(id)) out.set(id, [...dates]);
    for (const id of u.snapshot.contacts.keys()) if (!out.has(id)) out.set(id, []);
  }
  return out;
}

/** The earliest instant after `at` at which any of these verdicts may change. */
function nextInstant(
  evaluations: readonly StepEvaluation[], journey: Journey, snapshot: Pick<MutableSnapshot, 'sentToContact' | 'activities'>, at: Date,
): number | null {
  const sent = snapshot.sentToContact;
  const t = at.getTime();
  let best: number | null = null;
  const consider = (x: number | undefined) => {
    if (x !== undefined && x > t && (best === null || x < best)) best = x;
  };
  for (const e of evaluations) {
    if (!e.due || e.verdict.kind === 'spent' || e.verdict.kind === 'not_eligible') continue;
    consider(e.due.dueAt.getTime());
    consider(e.due.windowEndsAt.getTime());
    if (e.verdict.kind === 'scheduled') consider(e.verdict.at.getTime());
    // Capped: the oldest counted send stops counting perDays after it was sent.
    const cap = journey.defaults.frequencyCap;
    const contactId = e.recipient?.contact?.id;
    if (e.verdict.kind === 'suppress' && e.verdict.reason === 'frequency_cap' && cap && contactId !== undefined) {
      for (const s of sent.get(contactId) ?? []) consider(s.getTime() + cap.perDays * DAY);
    }
    // Held by an activity: an activity counts from `span` before its time to `span` after it
    // (both ends included), so the verdict may change just after either end.
    const span = e.step.skipIfRecentActivityMinutes;
    if (span !== null) {
      for (const a of snapshot.activities) {
        if (a.kind === 'note') continue;
        for (const time of [a.doneAt, a.dueAt]) {
          if (time) {
            consider(time.getTime() - span * MINUTE);
            consider(time.getTime() + span * MINUTE + 1);
          }
        }
      }
    }
    const closing = e.closingDate;
    if (closing && isCustomerFacing(e.step)) {
      consider(zonedTimeOrGapEnd(addDays(closing, 1), { hour: 0, minute: 0 }, e.recipient?.timeZone ?? journey.defaults.timeZone).getTime());
    }
  }
  return best;
}
