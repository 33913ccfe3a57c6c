/**
 * Tests for src/journey/decide.ts (`evaluate`) and src/journey/decide-job.ts (`decideJob`):
 * SPEC section 3, "Who gets it, and when it is suppressed" and "Occurrence, and what spends a step".
 *
 * The base case, unless a row says otherwise: opportunity 1 closes on 2026-06-20, stage
 * qualification (10 %), amount 12000.00, primary contact anna@example.com with no time zone, so
 * journey defaults Europe/Brussels apply (CEST, UTC+2, all of June 2026).
 *
 * Hand-computed instants for the step `closing-in-3-days` (daysBefore 3, sendAt 09:00, window 24h):
 * due 2026-06-17 09:00 CEST = 2026-06-17T07:00Z, window ends 2026-06-18T07:00Z.
 * NOW = 2026-06-17T08:00Z = 10:00 CEST, one hour into that window.
 */
import { describe, expect, it } from 'vitest';
import { decideJob, type DeliveryRequest, type JobAction } from '../../src/journey/decide-job.ts';
import { evaluate, type StepEvaluation } from '../../src/journey/decide.ts';
import type { Journey, Snapshot, Step } from '../../src/journey/types.ts';
import {
  activity, at, contact, DAY, daysAfter, daysBefore, decision, journey, OWNER, role, snapshot,
  stageEntered, STAGES,
} from '../helpers/journey-builders.ts';

const NOW = '2026-06-17T08:00:00Z';
const S3 = daysBefore('closing-in-3-days', 3);

/** A verdict as a user reads it: `send`, `suppress:expired`, `not_eligible:opportunity_closed`… */
function verdictOf(e: StepEvaluation): string {
  const v = e.verdict;
  switch (v.kind) {
    case 'suppress': return `suppress:${v.reason}`;
    case 'not_eligible': return `not_eligible:${v.reason ?? 'inactive'}`;
    case 'scheduled': return `scheduled:${v.at.toISOString()}`;
    case 'spent': return `spent:${v.status}`;
    case 'send': return 'send';
  }
}

function actionOf(a: JobAction): string {
  return a.kind === 'suppress' ? `suppress:${a.reason}` : a.kind;
}

/** The only evaluation of `stepId` (one recipient). */
function one(snap: Snapshot, j: Journey, now: string, stepId: string = S3.id): StepEvaluation {
  const found = evaluate(snap, j, at(now)).filter((e) => e.step.id === stepId);
  expect(found).toHaveLength(1);
  return found[0]!;
}

function verdictsById(snap: Snapshot, j: Journey, now: string): Record<string, string> {
  return Object.fromEntries(evaluate(snap, j, at(now)).map((e) => [e.step.id, verdictOf(e)]));
}

interface Row {
  name: string;
  snap: Snapshot;
  steps?: Step[];
  cap?: { max: number; perDays: number };
  now?: string;
  stepId?: string;
  expected: string;
}

// Owner step due at the same instant as S3 (owner steps use defaults.timeZone, Brussels).
const OWNER_S3 = daysBefore('owner-3-days', 3, { to: OWNER });
// daysBefore 0: due 2026-06-20T07:00Z (09:00 CEST), window to 2026-06-21T07:00Z.
const S0 = daysBefore('closing-today', 0);
// 06:00 CEST on 21 June: inside S0's window, but the local date is after the closing date.
const NEXT_MORNING = '2026-06-21T04:00:00Z';
const UNSUBSCRIBED = { unsubscribedAt: at('2026-06-01T12:00:00Z') };
const BOUNCED = { bouncedAt: at('2026-06-02T12:00:00Z') };
const RECENT = (input: Parameters<typeof daysBefore>[2] = {}) => daysBefore('closing-in-3-days', 3, { ...input, skipIfRecentActivityMinutes: 2 * DAY });
const CALL_YESTERDAY = activity(7, 'call', { doneAt: '2026-06-16T08:00:00Z' });

describe('evaluate: the reason table, one reason at a time', () => {
  const rows: Row[] = [
    { name: 'nothing stands in the way → send', snap: snapshot(), expected: 'send' },

    // opportunity_closed: won/lost is "not eligible" at scan time (no row).
    { name: 'won → not eligible (opportunity_closed)', snap: snapshot({ opportunity: { stage: 'won' } }), expected: 'not_eligible:opportunity_closed' },
    { name: 'lost → not eligible (opportunity_closed)', snap: snapshot({ opportunity: { stage: 'lost' } }), expected: 'not_eligible:opportunity_closed' },

    // stage_not_eligible
    { name: 'stage not in the step\'s stages', snap: snapshot(), steps: [daysBefore('closing-in-3-days', 3, { stages: ['proposal', 'negotiation'] })], expected: 'not_eligible:stage_not_eligible' },
    { name: 'stage in the step\'s stages → send', snap: snapshot({ opportunity: { stage: 'proposal' } }), steps: [daysBefore('closing-in-3-days', 3, { stages: ['proposal', 'negotiation'] })], expected: 'send' },
    { name: 'probability 10 below minProbability 50', snap: snapshot(), steps: [daysBefore('closing-in-3-days', 3, { minProbability: 50 })], expected: 'not_eligible:stage_not_eligible' },
    { name: 'probability 50 meets minProbability 50 → send', snap: snapshot({ opportunity: { stage: 'proposal' } }), steps: [daysBefore('closing-in-3-days', 3, { minProbability: 50 })], expected: 'send' },
    { name: 'blank amount never meets minAmount', snap: snapshot({ opportunity: { amount: null } }), steps: [daysBefore('closing-in-3-days', 3, { minAmount: '1000' })], expected: 'not_eligible:stage_not_eligible' },
    { name: 'amount 999.99 below minAmount 1000', snap: snapshot({ opportunity: { amount: '999.99' } }), steps: [daysBefore('closing-in-3-days', 3, { minAmount: '1000' })], expected: 'not_eligible:stage_not_eligible' },
    { name: 'amount 1000.00 meets minAmount 1000 → send', snap: snapshot({ opportunity: { amount: '1000.00' } }), steps: [daysBefore('closing-in-3-days', 3, { minAmount: '1000' })], expected: 'send' },
    { name: 'blank amount with no minimum → send', snap: snapshot({ opportunity: { amount: null } }), expected: 'send' },

    // closing_date_passed
    { name: 'daysBefore 0, in window, next morning local → closing_date_passed', snap: snapshot(), steps: [S0], stepId: S0.id, now: NEXT_MORNING, expected: 'suppress:closing_date_passed' },
    { name: 'daysBefore 0, 23:59 CEST on the closing day → send', snap: snapshot(), steps: [S0], stepId: S0.id, now: '2026-06-20T21:59:00Z', expected: 'send' },

    // expired
    { name: 'at due + window exactly → expired', snap: snapshot(), now: '2026-06-18T07:00:00Z', expected: 'suppress:expired' },
    { name: 'one minute before the window ends → send', snap: snapshot(), now: '2026-06-18T06:59:00Z', expected: 'send' },

    // no_contact
    { name: 'no primary contact → no_contact', snap: snapshot({ opportunity: { primaryContactId: null } }), expected: 'suppress:no_contact' },
    { name: 'primary contact id not among the loaded contacts → no_contact', snap: snapshot({ opportunity: { primaryContactId: 99 } }), expected: 'suppress:no_contact' },
    { name: 'owner step, no owner_email → no_contact', snap: snapshot({ opportunity: { ownerEmail: null } }), steps: [OWNER_S3], stepId: OWNER_S3.id, expected: 'suppress:no_contact' },
    { name: 'owner step, blank owner_email → no_contact', snap: snapshot({ opportunity: { ownerEmail: '   ' } }), steps: [OWNER_S3], stepId: OWNER_S3.id, expected: 'suppress:no_contact' },
    { name: 'role step, nobody has the role → no_contact', snap: snapshot({ contacts: [contact(1), contact(2)], roles: [{ contactId: 2, role: 'champion' }] }), steps: [daysBefore('closing-in-3-days', 3, { to: role('decision-maker') })], expected: 'suppress:no_contact' },
    { name: 'role step, a contact has the role → send', snap: snapshot({ contacts: [contact(1), contact(2)], roles: [{ contactId: 2, role: 'decision-maker' }] }), steps: [daysBefore('closing-in-3-days', 3, { to: role('decision-maker') })], expected: 'send' },

    // invalid_email
    { name: 'contact with no email → invalid_email', snap: snapshot({ contacts: [contact(1, { email: null })] }), expected: 'suppress:invalid_email' },
    { name: '"not-an-email" → invalid_email', snap: snapshot({ contacts: [contact(1, { email: 'not-an-email' })] }), expected: 'suppress:invalid_email' },
    { name: '"a@b" (no dot in the domain) → invalid_email', snap: snapshot({ contacts: [contact(1, { email: 'a@b' })] }), expected: 'suppress:invalid_email' },
    { name: 'header injection with CRLF → invalid_email', snap: snapshot({ contacts: [contact(1, { email: 'anna@example.com\r\nBcc: eve@example.org' })] }), expected: 'suppress:invalid_email' },
    { name: 'CRLF inside the address → invalid_email', snap: snapshot({ contacts: [contact(1, { email: 'anna@exam\r\nple.com' })] }), expected: 'suppress:invalid_email' },
    { name: 'owner email not valid → invalid_email', snap: snapshot({ opportunity: { ownerEmail: 'owner at agency' } }), steps: [OWNER_S3], stepId: OWNER_S3.id, expected: 'suppress:invalid_email' },
    { name: 'mixed case with spaces around is normalised → send', snap: snapshot({ contacts: [contact(1, { email: '  Anna@Example.COM ' })] }), expected: 'send' },

    // unsubscribed / bounced
    { name: 'unsubscribed_at set → unsubscribed', snap: snapshot({ contacts: [contact(1, UNSUBSCRIBED)] }), expected: 'suppress:unsubscribed' },
    { name: 'bounced_at set → bounced', snap: snapshot({ contacts: [contact(1, BOUNCED)] }), expected: 'suppress:bounced' },

    // recent_activity (skipIfRecentActivity 2d = 2880 minutes)
    { name: 'call done 1 day before now → recent_activity', snap: snapshot({ activities: [CALL_YESTERDAY] }), steps: [RECENT()], expected: 'suppress:recent_activity' },
    { name: 'task due 1 day after now → recent_activity', snap: snapshot({ activities: [activity(8, 'task', { dueAt: '2026-06-18T08:00:00Z' })] }), steps: [RECENT()], expected: 'suppress:recent_activity' },
    { name: 'a note 1 day before does not count → send', snap: snapshot({ activities: [activity(9, 'note', { doneAt: '2026-06-16T08:00:00Z', dueAt: '2026-06-16T08:00:00Z' })] }), steps: [RECENT()], expected: 'send' },
    { name: 'call done 3 days before → send', snap: snapshot({ activities: [activity(10, 'call', { doneAt: '2026-06-14T08:00:00Z' })] }), steps: [RECENT()], expected: 'send' },
    { name: 'task due 3 days after → send', snap: snapshot({ activities: [activity(11, 'task', { dueAt: '2026-06-20T08:00:00Z' })] }), steps: [RECENT()], expected: 'send' },
    { name: 'recent call but the step has no skipIfRecentActivity → send', snap: snapshot({ activities: [CALL_YESTERDAY] }), expected: 'send' },

    // frequency_cap
    { name: 'cap 1 per 2 days, one email 1 day ago → frequency_cap', snap: snapshot({ sentToContact: { 1: ['2026-06-16T08:00:00Z'] } }), cap: { max: 1, perDays: 2 }, expected: 'suppress:frequency_cap' },
    { name: 'cap 1 per 2 days, one email 2 days and 1 minute ago → send', snap: snapshot({ sentToContact: { 1: ['2026-06-15T07:59:00Z'] } }), cap: { max: 1, perDays: 2 }, expected: 'send' },
    { name: 'cap 2 per 7 days, one email → send', snap: snapshot({ sentToContact: { 1: ['2026-06-14T08:00:00Z'] } }), cap: { max: 2, perDays: 7 }, expected: 'send' },
    { name: 'cap 2 per 7 days, two emails → frequency_cap', snap: snapshot({ sentToContact: { 1: ['2026-06-12T08:00:00Z', '2026-06-14T08:00:00Z'] } }), cap: { max: 2, perDays: 7 }, expected: 'suppress:frequency_cap' },
    { name: 'emails to another contact do not count → send', snap: snapshot({ sentToContact: { 2: ['2026-06-16T08:00:00Z'] } }), cap: { max: 1, perDays: 2 }, expected: 'send' },
    { name: 'owner steps are exempt from the cap → send', snap: snapshot({ sentToContact: { 1: ['2026-06-16T08:00:00Z'] } }), cap: { max: 1, perDays: 2 }, steps: [OWNER_S3], stepId: OWNER_S3.id, expected: 'send' },
  ];

  it.each(rows)('$name', ({ snap, steps, cap, now, stepId, expected }) => {
    const j = journey(steps ?? [S3], { frequencyCap: cap ?? null });
    expect(verdictOf(one(snap, j, now ?? NOW, stepId))).toBe(expected);
  });

  it('frequency_cap detail names the cap', () => {
    const e = one(snapshot({ sentToContact: { 1: ['2026-06-16T08:00:00Z'] } }), journey([S3], { frequencyCap: { max: 1, perDays: 2 } }), NOW);
    expect(e.verdict).toMatchObject({ kind: 'suppress', reason: 'frequency_cap', detail: expect.stringMatching(/cap 1 per 2 days/) });
  });

  it('a role step addresses every contact with the role, each with its own verdict', () => {
    const snap = snapshot({
      contacts: [contact(1), contact(2), contact(3, UNSUBSCRIBED)],
      roles: [{ contactId: 3, role: 'decision-maker' }, { contactId: 2, role: 'decision-maker' }, { contactId: 1, role: 'champion' }],
    });
    const evaluations = evaluate(snap, journey([daysBefore('dm', 3, { to: role('decision-maker') })]), at(NOW));
    expect(evaluations.map((e) => [e.recipient?.address, verdictOf(e)])).toEqual([
      ['contact2@example.com', 'send'],
      ['contact3@example.com', 'suppress:unsubscribed'],
    ]);
  });
});

describe('evaluate: precedence when several reasons apply (SPEC table order)', () => {
  const rows: Row[] = [
    { name: 'closed AND unsubscribed → not eligible (opportunity_closed)', snap: snapshot({ opportunity: { stage: 'won' }, contacts: [contact(1, UNSUBSCRIBED)] }), expected: 'not_eligible:opportunity_closed' },
    { name: 'closed AND stage filter → opportunity_closed', snap: snapshot({ opportunity: { stage: 'lost' } }), steps: [daysBefore('closing-in-3-days', 3, { stages: ['proposal'] })], expected: 'not_eligible:opportunity_closed' },
    { name: 'closed AND expired → opportunity_closed', snap: snapshot({ opportunity: { stage: 'won' } }), now: '2026-06-19T08:00:00Z', expected: 'not_eligible:opportunity_closed' },
    { name: 'stage filter AND unsubscribed → stage_not_eligible', snap: snapshot({ contacts: [contact(1, UNSUBSCRIBED)] }), steps: [daysBefore('closing-in-3-days', 3, { minProbability: 50 })], expected: 'not_eligible:stage_not_eligible' },
    { name: 'stage filter AND closing date passed → stage_not_eligible', snap: snapshot({ opportunity: { amount: null } }), steps: [daysBefore('closing-today', 0, { minAmount: '1' })], stepId: 'closing-today', now: NEXT_MORNING, expected: 'not_eligible:stage_not_eligible' },
    { name: 'closing date passed AND expired → closing_date_passed', snap: snapshot(), now: '2026-06-21T08:00:00Z', expected: 'suppress:closing_date_passed' },
    { name: 'closing date passed AND unsubscribed → closing_date_passed', snap: snapshot({ contacts: [contact(1, UNSUBSCRIBED)] }), steps: [S0], stepId: S0.id, now: NEXT_MORNING, expected: 'suppress:closing_date_passed' },
    { name: 'expired AND unsubscribed → expired', snap: snapshot({ contacts: [contact(1, UNSUBSCRIBED)] }), now: '2026-06-18T09:00:00Z', expected: 'suppress:expired' },
    { name: 'expired AND no primary contact → expired', snap: snapshot({ opportunity: { primaryContactId: null } }), now: '2026-06-18T09:00:00Z', expected: 'suppress:expired' },
    { name: 'no_contact AND recent activity → no_contact', snap: snapshot({ opportunity: { primaryContactId: null }, activities: [CALL_YESTERDAY] }), steps: [RECENT()], expected: 'suppress:no_contact' },
    { name: 'invalid_email AND unsubscribed → invalid_email', snap: snapshot({ contacts: [contact(1, { email: 'not-an-email', ...UNSUBSCRIBED })] }), expected: 'suppress:invalid_email' },
    { name: 'unsubscribed AND bounced → unsubscribed', snap: snapshot({ contacts: [contact(1, { ...UNSUBSCRIBED, ...BOUNCED })] }), expected: 'suppress:unsubscribed' },
    { name: 'bounced AND recent activity → bounced', snap: snapshot({ contacts: [contact(1, BOUNCED)], activities: [CALL_YESTERDAY] }), steps: [RECENT()], expected: 'suppress:bounced' },
    { name: 'recent activity AND frequency cap → recent_activity', snap: snapshot({ activities: [CALL_YESTERDAY], sentToContact: { 1: ['2026-06-16T08:00:00Z'] } }), steps: [RECENT()], cap: { max: 1, perDays: 2 }, expected: 'suppress:recent_activity' },
    { name: 'unsubscribed AND frequency cap → unsubscribed', snap: snapshot({ contacts: [contact(1, UNSUBSCRIBED)], sentToContact: { 1: ['2026-06-16T08:00:00Z'] } }), cap: { max: 1, perDays: 2 }, expected: 'suppress:unsubscribed' },
  ];

  it.each(rows)('$name', ({ snap, steps, cap, now, stepId, expected }) => {
    const j = journey(steps ?? [S3], { frequencyCap: cap ?? null });
    expect(verdictOf(one(snap, j, now ?? NOW, stepId))).toBe(expected);
  });
});

describe('evaluate: closing_date_passed uses the recipient\'s local date; owner steps may fire after it', () => {
  it('Tokyo contact: 16:00Z on 20 June is already 21 June in Tokyo → closing_date_passed', () => {
    // Due 2026-06-20 09:00 JST = 00:00Z, window to 2026-06-21T00:00Z; 16:00Z = 01:00 JST on 21 June.
    const snap = snapshot({ contacts: [contact(1, { timeZone: 'Asia/Tokyo' })] });
    const e = one(snap, journey([S0]), '2026-06-20T16:00:00Z', S0.id);
    expect(verdictOf(e)).toBe('suppress:closing_date_passed');
    expect(e.record).toBe(true);
  });

  it('Brussels contact at the same instant (18:00 CEST on 20 June) → send', () => {
    expect(verdictOf(one(snapshot(), journey([S0]), '2026-06-20T16:00:00Z', S0.id))).toBe('send');
  });

  it('a stale opportunity: the owner daysAfter 1 step sends while the customer step is suppressed', () => {
    const owner = daysAfter('update-closing-date', 1, { to: OWNER });
    // Owner step due 2026-06-21 09:00 CEST = 07:00Z; now 10:00 CEST on 21 June.
    const v = verdictsById(snapshot(), journey([S0, owner]), '2026-06-21T08:00:00Z');
    expect(v).toEqual({ 'closing-today': 'suppress:closing_date_passed', 'update-closing-date': 'send' });
  });

  it('the owner daysAfter 1 step is scheduled for 09:00 local the day after the closing date', () => {
    const owner = daysAfter('update-closing-date', 1, { to: OWNER });
    expect(verdictOf(one(snapshot(), journey([owner]), '2026-06-21T04:00:00Z', owner.id))).toBe('scheduled:2026-06-21T07:00:00.000Z');
  });
});

describe('evaluate: catch-up (daemon down) — only the step nearest the closing date is sent', () => {
  // Due (09:00 CEST): 14 days 2026-06-06T07:00Z, 7 days 2026-06-13T07:00Z, 3 days 2026-06-17T07:00Z.
  // NOW (closing − 3 days, 10:00 CEST) is 11d 1h after the 14-day due, 4d 1h after the 7-day due.
  const steps = (windowMinutes: number, extra: { s3?: Parameters<typeof daysBefore>[2] } = {}) => [
    daysBefore('closing-in-14-days', 14, { timing: { windowMinutes } }),
    daysBefore('closing-in-7-days', 7, { timing: { windowMinutes } }),
    daysBefore('closing-in-3-days', 3, { ...extra.s3, timing: { windowMinutes } }),
  ];

  it('windows 12d: 3 days sends, 7 and 14 days are superseded (and recorded)', () => {
    const evaluations = evaluate(snapshot(), journey(steps(12 * DAY)), at(NOW));
    expect(evaluations.map((e) => [e.step.id, verdictOf(e), e.record])).toEqual([
      ['closing-in-14-days', 'suppress:superseded', true],
      ['closing-in-7-days', 'suppress:superseded', true],
      ['closing-in-3-days', 'send', false],
    ]);
    expect(evaluations[1]!.verdict).toMatchObject({ detail: expect.stringContaining('closing-in-3-days') });
  });

  it('windows 10d: 3 days sends, 7 days superseded, 14 days expired (its window closed 2026-06-16T07:00Z)', () => {
    expect(verdictsById(snapshot(), journey(steps(10 * DAY)), NOW)).toEqual({
      'closing-in-14-days': 'suppress:expired',
      'closing-in-7-days': 'suppress:superseded',
      'closing-in-3-days': 'send',
    });
  });

  it('windows 24h: the older steps are expired, not superseded', () => {
    expect(verdictsById(snapshot(), journey(steps(DAY)), NOW)).toEqual({
      'closing-in-14-days': 'suppress:expired',
      'closing-in-7-days': 'suppress:expired',
      'closing-in-3-days': 'send',
    });
  });

  it('a nearer step already spent still supersedes the older ones', () => {
    const snap = snapshot({ history: [decision({ stepId: 'closing-in-3-days', status: 'sent', decidedAt: '2026-06-17T07:01:00Z' })] });
    expect(verdictsById(snap, journey(steps(12 * DAY)), NOW)).toEqual({
      'closing-in-14-days': 'suppress:superseded',
      'closing-in-7-days': 'suppress:superseded',
      'closing-in-3-days': 'spent:sent',
    });
  });

  describe('once the nearer step\'s window has closed, the older steps\' still open', () => {
    // 7 days with a window of 12 days (open until 2026-06-25T07:00Z), 3 days with 24h (closed at
    // 2026-06-18T07:00Z). LATER is the day after the 3-day step was due.
    const longer = [daysBefore('closing-in-7-days', 7, { timing: { windowMinutes: 12 * DAY } }), daysBefore('closing-in-3-days', 3, { timing: { windowMinutes: DAY } })];
    const LATER = '2026-06-18T08:00:00Z';

    it('a nearer step sent for this closing date still supersedes: the customer does not get "7 days" after "3 days"', () => {
      const snap = snapshot({ history: [
        decision({ stepId: 'closing-in-3-days', status: 'sent', decidedAt: '2026-06-17T07:01:00Z' }),
        decision({ stepId: 'closing-in-7-days', status: 'suppressed', reason: 'superseded', decidedAt: '2026-06-17T07:01:00Z' }),
      ] });
      const e = one(snap, journey(longer), LATER, 'closing-in-7-days');
      expect(verdictOf(e)).toBe('suppress:superseded');
      expect(e.verdict).toMatchObject({ detail: 'step closing-in-3-days, nearer the closing date, was sent for it already' });
      // Recorded when it was first superseded: no second row.
      expect(e.record).toBe(false);
      // Never superseded before (no scan while both were open): recorded now.
      expect(one(snapshot({ history: [decision({ stepId: 'closing-in-3-days', status: 'unknown', decidedAt: '2026-06-17T07:01:00Z' })] }), journey(longer), LATER, 'closing-in-7-days').record).toBe(true);
    });

    it('a nearer step sent for another closing date, or suppressed for this one, does not supersede', () => {
      const moved = snapshot({ history: [decision({ stepId: 'closing-in-3-days', status: 'sent', closingDate: '2026-05-30', decidedAt: '2026-05-27T07:01:00Z' })] });
      expect(verdictOf(one(moved, journey(longer), LATER, 'closing-in-7-days'))).toBe('send');
      const suppressed = snapshot({ history: [decision({ stepId: 'closing-in-3-days', status: 'suppressed', reason: 'expired', decidedAt: '2026-06-18T07:01:00Z' })] });
      expect(verdictOf(one(suppressed, journey(longer), LATER, 'closing-in-7-days'))).toBe('send');
    });
  });

  it('superseded beats a recipient reason: unsubscribed contact', () => {
    const snap = snapshot({ contacts: [contact(1, UNSUBSCRIBED)] });
    expect(verdictsById(snap, journey(steps(12 * DAY)), NOW)).toEqual({
      'closing-in-14-days': 'suppress:superseded',
      'closing-in-7-days': 'suppress:superseded',
      'closing-in-3-days': 'suppress:unsubscribed',
    });
  });

  it('the nearer step not due yet does not supersede: 7 days sends, 14 days superseded by it', () => {
    // 2026-06-16T08:00Z: the 3-day step is due tomorrow.
    const evaluations = evaluate(snapshot(), journey(steps(12 * DAY)), at('2026-06-16T08:00:00Z'));
    expect(evaluations.map((e) => [e.step.id, verdictOf(e)])).toEqual([
      ['closing-in-14-days', 'suppress:superseded'],
      ['closing-in-7-days', 'send'],
      ['closing-in-3-days', 'scheduled:2026-06-17T07:00:00.000Z'],
    ]);
    expect(evaluations[0]!.verdict).toMatchObject({ detail: expect.stringContaining('closing-in-7-days') });
  });

  it('a nearer step filtered out by its own stage filter does not supersede', () => {
    expect(verdictsById(snapshot(), journey(steps(12 * DAY, { s3: { minAmount: '100000' } })), NOW)).toEqual({
      'closing-in-14-days': 'suppress:superseded',
      'closing-in-7-days': 'send',
      'closing-in-3-days': 'not_eligible:stage_not_eligible',
    });
  });

  // SPEC: a suppression is written once per (opportunity, step, recipient, closing date, reason).
  // `record` is documented as "a suppression not written before". See the report: the catch-up
  // sets record = true unconditionally (the database's unique index absorbs the duplicate).
  it('superseded already recorded for this closing date → record false', () => {
    const snap = snapshot({ history: [decision({ stepId: 'closing-in-7-days', status: 'suppressed', reason: 'superseded', decidedAt: '2026-06-17T07:00:00Z' })] });
    const e = one(snap, journey(steps(12 * DAY)), NOW, 'closing-in-7-days');
    expect(verdictOf(e)).toBe('suppress:superseded');
    expect(e.record).toBe(false);
  });
});

describe('evaluate: spent', () => {
  const rows: { name: string; history: Parameters<typeof decision>[0][]; expected: string }[] = [
    { name: 'sent → spent', history: [{ stepId: S3.id, status: 'sent' }], expected: 'spent:sent' },
    { name: 'unknown (handed to SMTP) → spent', history: [{ stepId: S3.id, status: 'unknown' }], expected: 'spent:unknown' },
    { name: 'failed smtp_rejected → spent', history: [{ stepId: S3.id, status: 'failed', reason: 'smtp_rejected' }], expected: 'spent:failed' },
    { name: 'failed template_error spends nothing → send', history: [{ stepId: S3.id, status: 'failed', reason: 'template_error' }], expected: 'send' },
    { name: 'suppressed (unsubscribed) spends nothing → send', history: [{ stepId: S3.id, status: 'suppressed', reason: 'unsubscribed' }], expected: 'send' },
    { name: 'suppressed (closing_date_changed) spends nothing → send', history: [{ stepId: S3.id, status: 'suppressed', reason: 'closing_date_changed', closingDate: '2026-06-13' }], expected: 'send' },
    { name: 'sent for another step → send', history: [{ stepId: 'closing-in-7-days', status: 'sent' }], expected: 'send' },
    { name: 'sent to another recipient → send', history: [{ stepId: S3.id, status: 'sent', recipient: 'bob@example.com', contactId: 2 }], expected: 'send' },
    { name: 'sent under an older closing date, occurrence \'\' → still spent', history: [{ stepId: S3.id, status: 'sent', closingDate: '2026-06-13' }], expected: 'spent:sent' },
  ];
  it.each(rows)('$name', ({ history, expected }) => {
    expect(verdictOf(one(snapshot({ history: history.map(decision) }), journey([S3]), NOW))).toBe(expected);
  });

  it('spent reports when it was decided', () => {
    const e = one(snapshot({ history: [decision({ stepId: S3.id, status: 'sent', decidedAt: '2026-06-17T07:00:05Z' })] }), journey([S3]), NOW);
    expect(e.verdict).toEqual({ kind: 'spent', status: 'sent', decidedAt: at('2026-06-17T07:00:05Z') });
    expect(e.record).toBe(false);
  });

  it('matches the contact\'s normalised address', () => {
    const snap = snapshot({ contacts: [contact(1, { email: ' Anna@Example.COM' })], history: [decision({ stepId: S3.id, status: 'sent' })] });
    expect(verdictOf(one(snap, journey([S3]), NOW))).toBe('spent:sent');
  });

  it('a spent step stays spent after its window (no expired row)', () => {
    const e = one(snapshot({ history: [decision({ stepId: S3.id, status: 'sent' })] }), journey([S3]), '2026-06-19T08:00:00Z');
    expect(verdictOf(e)).toBe('spent:sent');
    expect(e.record).toBe(false);
  });
});

describe('evaluate: occurrence', () => {
  const REPEAT = daysBefore('closing-in-3-days', 3, { repeat: 'onNewClosingDate' });

  it("is '' for a step without repeat", () => {
    expect(one(snapshot(), journey([S3]), NOW).occurrence).toBe('');
  });

  it('is the current closing date for repeat: onNewClosingDate', () => {
    const e = one(snapshot(), journey([REPEAT]), NOW);
    expect(e.occurrence).toBe('2026-06-20');
    expect(e.closingDate).toBe('2026-06-20');
  });

  it('repeat: sent for the previous closing date → sends again for the new one', () => {
    const snap = snapshot({ history: [decision({ stepId: REPEAT.id, status: 'sent', occurrence: '2026-06-13', closingDate: '2026-06-13' })] });
    expect(verdictOf(one(snap, journey([REPEAT]), NOW))).toBe('send');
  });

  it('repeat: sent for the current closing date → spent', () => {
    const snap = snapshot({ history: [decision({ stepId: REPEAT.id, status: 'sent', occurrence: '2026-06-20' })] });
    expect(verdictOf(one(snap, journey([REPEAT]), NOW))).toBe('spent:sent');
  });

  it("no repeat: a sent row with occurrence '' spends the step whatever the closing date", () => {
    const snap = snapshot({ opportunity: { closingDate: '2026-06-27' }, history: [decision({ stepId: S3.id, status: 'sent', closingDate: '2026-06-20' })] });
    // New closing date 2026-06-27: due 2026-06-24T07:00Z; now 10:00 CEST that day.
    expect(verdictOf(one(snap, journey([S3]), '2026-06-24T08:00:00Z'))).toBe('spent:sent');
  });
});

describe('evaluate: record (a suppression is written once per step, recipient, closing date and reason)', () => {
  const EXPIRED_AT = '2026-06-18T09:00:00Z';

  it('expired with no history → record true', () => {
    const e = one(snapshot(), journey([S3]), EXPIRED_AT);
    expect([verdictOf(e), e.record]).toEqual(['suppress:expired', true]);
  });

  it('expired when something was already decided for this step, recipient and closing date → record false', () => {
    const snap = snapshot({ history: [decision({ stepId: S3.id, status: 'suppressed', reason: 'unsubscribed' })] });
    const e = one(snap, journey([S3]), EXPIRED_AT);
    expect([verdictOf(e), e.record]).toEqual(['suppress:expired', false]);
  });

  it('expired with history only for an older closing date → record true', () => {
    const snap = snapshot({ history: [decision({ stepId: S3.id, status: 'suppressed', reason: 'unsubscribed', closingDate: '2026-06-13' })] });
    const e = one(snap, journey([S3]), EXPIRED_AT);
    expect([verdictOf(e), e.record]).toEqual(['suppress:expired', true]);
  });

  it('expired with history only for another step → record true', () => {
    const snap = snapshot({ history: [decision({ stepId: 'closing-in-7-days', status: 'suppressed', reason: 'expired' })] });
    expect(one(snap, journey([S3]), EXPIRED_AT).record).toBe(true);
  });

  it('unsubscribed already recorded for this closing date → record false', () => {
    const snap = snapshot({ contacts: [contact(1, UNSUBSCRIBED)], history: [decision({ stepId: S3.id, status: 'suppressed', reason: 'unsubscribed' })] });
    const e = one(snap, journey([S3]), NOW);
    expect([verdictOf(e), e.record]).toEqual(['suppress:unsubscribed', false]);
  });

  it('unsubscribed recorded for another closing date → record true', () => {
    const snap = snapshot({ contacts: [contact(1, UNSUBSCRIBED)], history: [decision({ stepId: S3.id, status: 'suppressed', reason: 'unsubscribed', closingDate: '2026-06-13' })] });
    expect(one(snap, journey([S3]), NOW).record).toBe(true);
  });

  it('a different reason recorded before (bounced) → record true for unsubscribed', () => {
    const snap = snapshot({ contacts: [contact(1, UNSUBSCRIBED)], history: [decision({ stepId: S3.id, status: 'suppressed', reason: 'bounced' })] });
    expect(one(snap, journey([S3]), NOW).record).toBe(true);
  });

  it("no_contact already recorded with recipient '' → record false", () => {
    const snap = snapshot({ opportunity: { primaryContactId: null }, history: [decision({ stepId: S3.id, status: 'suppressed', reason: 'no_contact', recipient: '', contactId: null })] });
    const e = one(snap, journey([S3]), NOW);
    expect([verdictOf(e), e.record, e.recipient]).toEqual(['suppress:no_contact', false, null]);
  });

  it('closing_date_passed in window, first time → record true; second time → false', () => {
    expect(one(snapshot(), journey([S0]), NEXT_MORNING, S0.id).record).toBe(true);
    const snap = snapshot({ history: [decision({ stepId: S0.id, status: 'suppressed', reason: 'closing_date_passed' })] });
    expect(one(snap, journey([S0]), NEXT_MORNING, S0.id).record).toBe(false);
  });

  it('send, scheduled and not eligible are never recorded', () => {
    expect(one(snapshot(), journey([S3]), NOW).record).toBe(false);
    expect(one(snapshot(), journey([S3]), '2026-06-17T06:00:00Z').record).toBe(false);
    expect(one(snapshot({ opportunity: { stage: 'won' } }), journey([S3]), NOW).record).toBe(false);
  });
});

describe('evaluate: time zones, scheduling and quiet hours', () => {
  it('an unknown contact time zone falls back to defaults.timeZone, flagged', () => {
    const e = one(snapshot({ contacts: [contact(1, { timeZone: 'Mars/Olympus' })] }), journey([S3]), NOW);
    expect(e.recipient).toMatchObject({ timeZone: 'Europe/Brussels', unknownZone: 'Mars/Olympus' });
    expect(e.due?.dueAt.toISOString()).toBe('2026-06-17T07:00:00.000Z'); // 09:00 CEST
    expect(verdictOf(e)).toBe('send');
  });

  it('unknown zone with defaults Asia/Tokyo → due at 09:00 JST', () => {
    const e = one(snapshot({ contacts: [contact(1, { timeZone: 'Europe/Bruxelles' })] }), journey([S3], { timeZone: 'Asia/Tokyo' }), NOW);
    expect(e.recipient).toMatchObject({ timeZone: 'Asia/Tokyo', unknownZone: 'Europe/Bruxelles' });
    expect(e.due?.dueAt.toISOString()).toBe('2026-06-17T00:00:00.000Z');
  });

  it('a known contact zone wins over defaults, not flagged', () => {
    const e = one(snapshot({ contacts: [contact(1, { timeZone: 'America/New_York' })] }), journey([S3]), NOW);
    expect(e.recipient).toMatchObject({ timeZone: 'America/New_York', unknownZone: null });
    expect(verdictOf(e)).toBe('scheduled:2026-06-17T13:00:00.000Z'); // 09:00 EDT
  });

  it('no contact zone → defaults.timeZone, not flagged', () => {
    const e = one(snapshot(), journey([S3]), NOW);
    expect(e.recipient).toMatchObject({ timeZone: 'Europe/Brussels', unknownZone: null });
  });

  it('before the due time → scheduled at the due instant', () => {
    expect(verdictOf(one(snapshot(), journey([S3]), '2026-06-17T06:59:00Z'))).toBe('scheduled:2026-06-17T07:00:00.000Z');
  });

  it('at the due instant exactly → send', () => {
    expect(verdictOf(one(snapshot(), journey([S3]), '2026-06-17T07:00:00Z'))).toBe('send');
  });

  it('stageEntered step not due yet → scheduled at 09:00 local, 2 days after entering', () => {
    const step = stageEntered('proposal-follow-up', 'proposal', 2);
    const snap = snapshot({ opportunity: { stage: 'proposal', stageEnteredAt: at('2026-06-16T12:00:00Z') } });
    expect(verdictOf(one(snap, journey([step]), NOW, step.id))).toBe('scheduled:2026-06-18T07:00:00.000Z');
  });

  it('stageEntered step, the opportunity is in another stage → not eligible', () => {
    const step = stageEntered('proposal-follow-up', 'proposal', 2);
    expect(verdictOf(one(snapshot({ opportunity: { stage: 'negotiation' } }), journey([step]), NOW, step.id))).toBe('not_eligible:stage_not_eligible');
  });

  it('closingDate step on an opportunity with no closing date → not eligible, no row', () => {
    const e = one(snapshot({ opportunity: { closingDate: null } }), journey([S3]), NOW);
    expect([e.verdict.kind, e.record, e.due]).toEqual(['not_eligible', false, null]);
  });

  it('quiet hours at now, inside the window → scheduled when they end (not send)', () => {
    // Due 09:00 CEST, window to 2026-06-18T07:00Z. Now 21:30 CEST → quiet until 08:00 CEST = 06:00Z.
    const step = daysBefore('closing-in-3-days', 3, { timing: { quietHours: ['20:00', '08:00'] } });
    expect(verdictOf(one(snapshot(), journey([step]), '2026-06-17T19:30:00Z'))).toBe('scheduled:2026-06-18T06:00:00.000Z');
    expect(verdictOf(one(snapshot(), journey([step]), '2026-06-18T06:00:00Z'))).toBe('send');
  });

  it('quiet hours use the recipient\'s zone: 21:30 in Brussels is 15:30 in New York', () => {
    // New York contact: due 09:00 EDT = 13:00Z; 19:30Z = 15:30 EDT, outside 20:00→08:00.
    const step = daysBefore('closing-in-3-days', 3, { timing: { quietHours: ['20:00', '08:00'] } });
    const snap = snapshot({ contacts: [contact(1, { timeZone: 'America/New_York' })] });
    expect(verdictOf(one(snap, journey([step]), '2026-06-17T19:30:00Z'))).toBe('send');
  });

  it('a due day on Saturday with skipWeekends → scheduled for Monday 00:00 local', () => {
    // Closing 2026-06-16: 3 days before is Saturday 2026-06-13; Monday 00:00 CEST = 2026-06-14T22:00Z.
    const step = daysBefore('closing-in-3-days', 3, { timing: { skipWeekends: true } });
    const snap = snapshot({ opportunity: { closingDate: '2026-06-16' } });
    expect(verdictOf(one(snap, journey([step]), '2026-06-13T08:00:00Z'))).toBe('scheduled:2026-06-14T22:00:00.000Z');
  });
});

describe('decideJob: the worker\'s re-check', () => {
  const JOB: DeliveryRequest = { opportunityId: 1, stepId: S3.id, closingDate: '2026-06-20', occurrence: '' };
  const S7_LONG = daysBefore('closing-in-7-days', 7, { timing: { windowMinutes: 10 * DAY } });

  interface JobRow {
    name: string;
    snap: Snapshot | null;
    job?: Partial<DeliveryRequest>;
    steps?: Step[];
    cap?: { max: number; perDays: number };
    now?: string;
    expected: string;
  }

  const rows: JobRow[] = [
    { name: 'opportunity deleted → opportunity_deleted', snap: null, expected: 'suppress:opportunity_deleted' },
    { name: 'won → opportunity_closed', snap: snapshot({ opportunity: { stage: 'won' } }), expected: 'suppress:opportunity_closed' },
    { name: 'lost → opportunity_closed', snap: snapshot({ opportunity: { stage: 'lost' } }), expected: 'suppress:opportunity_closed' },
    { name: 'closed AND closing date changed → opportunity_closed', snap: snapshot({ opportunity: { stage: 'won', closingDate: '2026-06-27' } }), expected: 'suppress:opportunity_closed' },
    { name: 'closing date moved later → closing_date_changed', snap: snapshot({ opportunity: { closingDate: '2026-06-27' } }), expected: 'suppress:closing_date_changed' },
    { name: 'closing date moved earlier → closing_date_changed', snap: snapshot({ opportunity: { closingDate: '2026-06-19' } }), expected: 'suppress:closing_date_changed' },
    { name: 'closing date removed → closing_date_changed', snap: snapshot({ opportunity: { closingDate: null } }), expected: 'suppress:closing_date_changed' },
    { name: 'closing date changed AND stage filter → closing_date_changed', snap: snapshot({ opportunity: { closingDate: '2026-06-27' } }), steps: [daysBefore('closing-in-3-days', 3, { minProbability: 50 })], expected: 'suppress:closing_date_changed' },
    { name: 'closing date changed AND unsubscribed → closing_date_changed', snap: snapshot({ opportunity: { closingDate: '2026-06-27' }, contacts: [contact(1, UNSUBSCRIBED)] }), expected: 'suppress:closing_date_changed' },
    { name: 'stage filter → stage_not_eligible', snap: snapshot(), steps: [daysBefore('closing-in-3-days', 3, { stages: ['proposal'] })], expected: 'suppress:stage_not_eligible' },
    { name: 'minProbability → stage_not_eligible', snap: snapshot(), steps: [daysBefore('closing-in-3-days', 3, { minProbability: 50 })], expected: 'suppress:stage_not_eligible' },
    { name: 'blank amount with minAmount → stage_not_eligible', snap: snapshot({ opportunity: { amount: null } }), steps: [daysBefore('closing-in-3-days', 3, { minAmount: '1000' })], expected: 'suppress:stage_not_eligible' },
    { name: 'amount below minAmount → stage_not_eligible', snap: snapshot({ opportunity: { amount: '500.00' } }), steps: [daysBefore('closing-in-3-days', 3, { minAmount: '1000' })], expected: 'suppress:stage_not_eligible' },
    { name: 'stageEntered step, stage moved on → stage_not_eligible', snap: snapshot({ opportunity: { stage: 'negotiation', stageEnteredAt: at('2026-06-17T07:30:00Z') } }), steps: [stageEntered('closing-in-3-days', 'proposal', 0)], expected: 'suppress:stage_not_eligible' },
    { name: 'closing date passed → closing_date_passed', snap: snapshot(), steps: [S0], job: { stepId: S0.id }, now: NEXT_MORNING, expected: 'suppress:closing_date_passed' },
    { name: 'window closed → expired', snap: snapshot(), now: '2026-06-18T07:00:00Z', expected: 'suppress:expired' },
    { name: 'nearer step in its window → superseded', snap: snapshot(), steps: [S7_LONG, S3], job: { stepId: S7_LONG.id }, expected: 'suppress:superseded' },
    { name: 'no primary contact → no_contact', snap: snapshot({ opportunity: { primaryContactId: null } }), expected: 'suppress:no_contact' },
    { name: 'invalid email → invalid_email', snap: snapshot({ contacts: [contact(1, { email: 'a@b' })] }), expected: 'suppress:invalid_email' },
    { name: 'unsubscribed → unsubscribed', snap: snapshot({ contacts: [contact(1, UNSUBSCRIBED)] }), expected: 'suppress:unsubscribed' },
    { name: 'bounced → bounced', snap: snapshot({ contacts: [contact(1, BOUNCED)] }), expected: 'suppress:bounced' },
    { name: 'recent call → recent_activity', snap: snapshot({ activities: [CALL_YESTERDAY] }), steps: [RECENT()], expected: 'suppress:recent_activity' },
    { name: 'cap reached → frequency_cap', snap: snapshot({ sentToContact: { 1: ['2026-06-16T08:00:00Z'] } }), cap: { max: 1, perDays: 2 }, expected: 'suppress:frequency_cap' },
    { name: 'all clear → send', snap: snapshot(), expected: 'send' },
    { name: 'not due yet → skip (no row)', snap: snapshot(), now: '2026-06-17T06:00:00Z', expected: 'skip' },
    { name: 'already sent → skip (no row)', snap: snapshot({ history: [decision({ stepId: S3.id, status: 'sent' })] }), expected: 'skip' },
    { name: 'quiet hours at send time → skip (no row)', snap: snapshot(), steps: [daysBefore('closing-in-3-days', 3, { timing: { quietHours: ['20:00', '08:00'] } })], now: '2026-06-17T19:30:00Z', expected: 'skip' },
    { name: 'step removed from the journey file → skip', snap: snapshot(), job: { stepId: 'gone' }, expected: 'skip' },
  ];

  it.each(rows)('$name', ({ snap, job, steps, cap, now, expected }) => {
    const actions = decideJob(snap, journey(steps ?? [S3], { frequencyCap: cap ?? null }), { ...JOB, ...job }, at(now ?? NOW));
    expect(actions.map(actionOf)).toEqual([expected]);
  });

  it('opportunity_deleted carries the job\'s closing date and occurrence, no recipient', () => {
    expect(decideJob(null, journey([S3]), JOB, at(NOW))).toEqual([
      expect.objectContaining({ kind: 'suppress', reason: 'opportunity_deleted', recipient: null, closingDate: '2026-06-20', occurrence: '' }),
    ]);
  });

  it('closing_date_changed records the date the job was computed from, for the current recipient', () => {
    const [action] = decideJob(snapshot({ opportunity: { closingDate: '2026-06-27' } }), journey([S3]), JOB, at(NOW));
    expect(action).toMatchObject({ kind: 'suppress', reason: 'closing_date_changed', closingDate: '2026-06-20', recipient: { address: 'anna@example.com' } });
    expect(action?.kind === 'suppress' && action.detail).toMatch(/2026-06-20.*2026-06-27/);
  });

  it('send carries the recipient', () => {
    const [action] = decideJob(snapshot(), journey([S3]), JOB, at(NOW));
    expect(action).toMatchObject({ kind: 'send', recipient: { address: 'anna@example.com', timeZone: 'Europe/Brussels' } });
  });

  it('a stageEntered job ignores a closing date that moved', () => {
    const step = stageEntered('proposal-follow-up', 'proposal', 0);
    const snap = snapshot({ opportunity: { stage: 'proposal', closingDate: '2026-06-27', stageEnteredAt: at('2026-06-17T07:30:00Z') } });
    const actions = decideJob(snap, journey([step]), { ...JOB, stepId: step.id }, at(NOW));
    expect(actions.map(actionOf)).toEqual(['send']);
  });

  it('a won opportunity is suppressed at send time even though the scan called it only "not eligible"', () => {
    const snap = snapshot({ opportunity: { stage: STAGES.won } });
    expect(verdictOf(one(snap, journey([S3]), NOW))).toBe('not_eligible:opportunity_closed');
    expect(decideJob(snap, journey([S3]), JOB, at(NOW)).map(actionOf)).toEqual(['suppress:opportunity_closed']);
  });
});
