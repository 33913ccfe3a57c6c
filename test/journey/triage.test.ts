/**
 * Tests for src/journey/triage.ts: the scan loads an opportunity whole only when triage says
 * `evaluate` might act on it. Triage may say "maybe" too often (it costs a load), never "no" when
 * `evaluate` would send or write a row.
 *
 * Hand-computed base case: step `closing-in-3-days` (daysBefore 3, sendAt 09:00, window 24h) on an
 * opportunity closing 2026-06-20, contact without a zone, so Europe/Brussels (CEST, UTC+2): due
 * 2026-06-17T07:00Z, window ends 2026-06-18T07:00Z.
 */
import { describe, expect, it } from 'vitest';
import { evaluate } from '../../src/journey/decide.ts';
import { mayNeedDecision } from '../../src/journey/triage.ts';
import type { Journey, PastDecision, Snapshot, Step } from '../../src/journey/types.ts';
import {
  activity, at, contact, daysAfter, daysBefore, decision, journey, OWNER, role, snapshot, stageEntered,
  STAGES, type StageKey,
} from '../helpers/journey-builders.ts';

const S3 = daysBefore('closing-in-3-days', 3);

function triage(s: Snapshot, j: Journey, now: string): boolean {
  return mayNeedDecision(s.opportunity, s.history, j, at(now));
}

/** What `evaluate` would do: the sends and the rows it would write. */
function acts(s: Snapshot, j: Journey, now: Date): string[] {
  return evaluate(s, j, now).filter((e) => e.verdict.kind === 'send' || e.record)
    .map((e) => `${e.step.id}:${e.verdict.kind === 'suppress' ? e.verdict.reason : e.verdict.kind}`);
}

describe('triage, by example', () => {
  it('a step not due anywhere on Earth yet is settled: 2026-06-16T16:00Z is before 09:00 of the 17th at UTC+14', () => {
    expect(triage(snapshot(), journey([S3]), '2026-06-16T16:00:00Z')).toBe(false);
  });

  it('the same step is open once 09:00 of its day may have come somewhere (UTC+14 reaches it at 2026-06-16T19:00Z)', () => {
    expect(triage(snapshot(), journey([S3]), '2026-06-16T19:30:00Z')).toBe(true);
  });

  it('a due step is open', () => {
    expect(triage(snapshot(), journey([S3]), '2026-06-17T08:00:00Z')).toBe(true);
  });

  it('a step sent to the primary contact is settled, under any address', () => {
    const sent = decision({ stepId: S3.id, status: 'sent', recipient: 'old-address@example.com' });
    expect(triage(snapshot({ history: [sent] }), journey([S3]), '2026-06-17T08:00:00Z')).toBe(false);
  });

  it('a step sent to someone else is not settled for the primary contact', () => {
    const sent = decision({ stepId: S3.id, status: 'sent', recipient: 'someone@example.com', contactId: 7 });
    expect(triage(snapshot({ history: [sent] }), journey([S3]), '2026-06-17T08:00:00Z')).toBe(true);
  });

  it('a suppression does not settle a step inside its window (the contact may have re-subscribed)', () => {
    const suppressed = decision({ stepId: S3.id, status: 'suppressed', reason: 'unsubscribed' });
    expect(triage(snapshot({ history: [suppressed] }), journey([S3]), '2026-06-17T08:00:00Z')).toBe(true);
  });

  it('a step whose window closed everywhere, with a decision at this closing date, is settled', () => {
    // The latest end of its window: 09:00 at UTC-12 on the 17th is 21:00Z, + 1 h for a DST gap, + 24 h.
    const suppressed = decision({ stepId: S3.id, status: 'suppressed', reason: 'unsubscribed' });
    expect(triage(snapshot({ history: [suppressed] }), journey([S3]), '2026-06-18T22:00:00Z')).toBe(false);
    expect(triage(snapshot({ history: [suppressed] }), journey([S3]), '2026-06-18T21:30:00Z')).toBe(true);
  });

  it('a step whose window closed with nothing decided is open: `expired` is to be written', () => {
    const s = snapshot();
    expect(triage(s, journey([S3]), '2026-06-19T08:00:00Z')).toBe(true);
    expect(acts(s, journey([S3]), at('2026-06-19T08:00:00Z'))).toEqual(['closing-in-3-days:expired']);
  });

  it('a decision made under another closing date does not settle the window of this one', () => {
    const moved = decision({ stepId: S3.id, status: 'suppressed', reason: 'unsubscribed', closingDate: '2026-06-10' });
    expect(triage(snapshot({ history: [moved] }), journey([S3]), '2026-06-19T08:00:00Z')).toBe(true);
  });

  it('a step whose stage filter fails is settled', () => {
    const s3 = daysBefore('closing-in-3-days', 3, { stages: ['proposal'] });
    expect(triage(snapshot(), journey([s3]), '2026-06-17T08:00:00Z')).toBe(false);
  });

  it('an owner step runs on the journey\'s time zone, which triage knows: its window closes when it closes there', () => {
    // Due the 21st at 09:00 in Brussels (07:00Z), for 60 minutes; something was decided for the
    // owner at this closing date already, so once the window closed nothing is left to write.
    const owner = daysAfter('update-closing-date', 1, { to: OWNER, timing: { sendAt: '09:00', windowMinutes: 60, quietHours: null, skipWeekends: false } });
    const earlier = decision({ stepId: owner.id, status: 'failed', reason: 'template_error', recipient: 'owner@agency.example', contactId: null });
    const s = snapshot({ history: [earlier] });
    expect(acts(s, journey([owner]), at('2026-06-21T07:30:00Z'))).toEqual(['update-closing-date:send']);
    expect(triage(s, journey([owner]), '2026-06-21T07:30:00Z')).toBe(true);
    expect(acts(s, journey([owner]), at('2026-06-21T08:30:00Z'))).toEqual([]);
    expect(triage(s, journey([owner]), '2026-06-21T08:30:00Z')).toBe(false);
    // Not due yet in Brussels, though it is elsewhere.
    expect(triage(snapshot(), journey([owner]), '2026-06-21T06:30:00Z')).toBe(false);
  });

  it('owner steps are settled by the owner address', () => {
    const owner = daysAfter('update-closing-date', 1, { to: OWNER });
    const sent = decision({ stepId: owner.id, status: 'sent', recipient: 'owner@agency.example', contactId: null });
    expect(triage(snapshot({ history: [sent] }), journey([owner]), '2026-06-21T08:00:00Z')).toBe(false);
    expect(triage(snapshot(), journey([owner]), '2026-06-21T08:00:00Z')).toBe(true);
  });

  it('a stage entered just before local midnight, the clocks going forward that night, falls due an hour sooner than a day after', () => {
    // Entered 2026-03-28T22:59Z = 23:59 CET in Brussels; CEST begins at 01:00Z. daysAfter 1 is due
    // on the 29th at 09:00 CEST = 07:00Z: 8 h 01 min after it was entered, not 9 h 01.
    const followUp = stageEntered('proposal-follow-up', 'proposal', 1);
    const s = snapshot({
      opportunity: { stage: 'proposal', stageEnteredAt: at('2026-03-28T22:59:00Z') },
      contacts: [contact(1, { timeZone: 'Europe/Brussels' })],
    });
    expect(acts(s, journey([followUp]), at('2026-03-29T07:30:00Z'))).toEqual(['proposal-follow-up:send']);
    expect(triage(s, journey([followUp]), '2026-03-29T07:30:00Z')).toBe(true);
    // Long before: nothing to decide anywhere.
    expect(triage(s, journey([followUp]), '2026-03-29T04:00:00Z')).toBe(false);
  });

  it('a stage entered late in the evening west of UTC counts from that local day', () => {
    // Entered 2026-06-16T02:00Z = 22:00 EDT on the 15th in New York: daysAfter 1 is due on the
    // 16th at 09:00 EDT = 13:00Z, although the UTC day of entering is already the 16th.
    const followUp = stageEntered('proposal-follow-up', 'proposal', 1);
    const s = snapshot({
      opportunity: { stage: 'proposal', stageEnteredAt: at('2026-06-16T02:00:00Z') },
      contacts: [contact(1, { timeZone: 'America/New_York' })],
    });
    expect(acts(s, journey([followUp]), at('2026-06-16T14:00:00Z'))).toEqual(['proposal-follow-up:send']);
    expect(triage(s, journey([followUp]), '2026-06-16T14:00:00Z')).toBe(true);
  });

  it('a weekend move keeps the window open into Monday: a suppression before does not settle it', () => {
    // Closing 2026-06-16, 3 days before = Saturday 13 June 09:00 UTC, moved to Monday 00:00 UTC;
    // its window (24h) ends Tuesday 00:00. The contact, unsubscribed before, has re-subscribed.
    const s3 = daysBefore('closing-in-3-days', 3, { timing: { skipWeekends: true } });
    const s = snapshot({
      opportunity: { closingDate: '2026-06-16' }, contacts: [contact(1, { timeZone: 'UTC' })],
      history: [decision({ stepId: s3.id, status: 'suppressed', reason: 'unsubscribed', closingDate: '2026-06-16' })],
    });
    expect(acts(s, journey([s3]), at('2026-06-15T23:00:00Z'))).toEqual(['closing-in-3-days:send']);
    expect(triage(s, journey([s3]), '2026-06-15T23:00:00Z')).toBe(true);
  });

  it('steps to a role are never settled by the row alone', () => {
    const s = daysBefore('to-the-buyer', 3, { to: role('buyer') });
    const sent = decision({ stepId: s.id, status: 'sent', contactId: 2 });
    expect(triage(snapshot({ history: [sent] }), journey([s]), '2026-06-17T08:00:00Z')).toBe(true);
  });

  it('with repeat onNewClosingDate, a send for an earlier closing date settles nothing', () => {
    const s3 = daysBefore('closing-in-3-days', 3, { repeat: 'onNewClosingDate' });
    const old = decision({ stepId: s3.id, status: 'sent', occurrence: '2026-06-10', closingDate: '2026-06-10' });
    expect(triage(snapshot({ history: [old] }), journey([s3]), '2026-06-17T08:00:00Z')).toBe(true);
    const now = decision({ stepId: s3.id, status: 'sent', occurrence: '2026-06-20' });
    expect(triage(snapshot({ history: [now] }), journey([s3]), '2026-06-17T08:00:00Z')).toBe(false);
  });

  it('a stage-entered step is open when the row does not tell when the stage was entered (the closing-date pass leaves it unread)', () => {
    const followUp = stageEntered('proposal-follow-up', 'proposal', 2);
    const sent = decision({ stepId: followUp.id, status: 'sent' });
    const s = snapshot({ opportunity: { stage: 'proposal', stageEnteredAt: at('2026-06-01T08:00:00Z') }, history: [sent] });
    // Entered two weeks before and sent: settled when the row tells when...
    expect(triage(s, journey([followUp]), '2026-06-17T08:00:00Z')).toBe(false);
    // ...but without the instant, triage cannot place its due day, and leaves it to `evaluate`.
    const blind = { ...s.opportunity, stageEnteredAt: null };
    expect(mayNeedDecision(blind, [sent], journey([followUp]), at('2026-06-17T08:00:00Z'))).toBe(true);
    // A closing-date step on the same row is judged as before.
    expect(mayNeedDecision(blind, [], journey([S3]), at('2026-06-16T16:00:00Z'))).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------
// Property: over many random opportunities, journeys, histories and instants (around both DST
// changes, in zones from UTC-12 to UTC+14 and with 30-minute DST), whenever triage says "no",
// evaluate neither sends nor writes anything.

/** mulberry32: a small seeded generator, so a failure can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ZONES = [null, 'Pacific/Kiritimati', 'Etc/GMT+12', 'Etc/GMT+12', 'Pacific/Pago_Pago', 'America/New_York', 'Europe/Brussels',
  'Asia/Kolkata', 'Australia/Lord_Howe', 'Not/A_Zone'];
// 8-day windows over DST changes: Europe (29 Mar, 25 Oct), New York (8 Mar, 1 Nov), Lord Howe's
// 30-minute ones (5 Apr, 4 Oct); and two with none.
const BASES = ['2026-03-26T00:00:00Z', '2026-03-04T00:00:00Z', '2026-04-01T00:00:00Z', '2026-06-14T00:00:00Z',
  '2026-09-30T00:00:00Z', '2026-10-22T00:00:00Z', '2026-10-28T00:00:00Z', '2026-12-24T00:00:00Z'];
const OPEN: StageKey[] = ['qualification', 'needs_analysis', 'proposal', 'negotiation'];
const MINUTE = 60_000;
const DAY_MS = 86_400_000;

function randomCase(rand: () => number): { s: Snapshot; j: Journey; now: Date } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const now = new Date(Date.parse(pick(BASES)) + int(0, 8 * 1440) * MINUTE);
  const day = (offset: number) => new Date(now.getTime() + offset * DAY_MS).toISOString().slice(0, 10);
  const steps: Step[] = [];
  for (let i = int(1, 4); i > 0; i--) {
    const id = `s${steps.length}`;
    const input = {
      to: pick([{ kind: 'primary' as const }, { kind: 'primary' as const }, OWNER, role('buyer')]),
      stages: pick([null, null, ['proposal', 'negotiation'], ['qualification']]),
      minAmount: pick([null, null, '10000']),
      repeat: pick(['never', 'never', 'onNewClosingDate'] as const),
      skipIfRecentActivityMinutes: pick([null, null, 1440]),
      timing: {
        sendAt: pick(['09:00', '02:30', '00:00', '23:59', '13:15']),
        windowMinutes: pick([30, 60, 1440, 3 * 1440]),
        quietHours: pick([null, null, ['20:00', '08:00'], ['12:00', '13:00']] as const) as [string, string] | null,
        skipWeekends: rand() < 0.3,
      },
    };
    steps.push(rand() < 0.75
      ? (input.to.kind === 'owner' && rand() < 0.5 ? daysAfter(id, int(0, 3), input) : daysBefore(id, int(0, 10), input))
      : stageEntered(id, pick(OPEN), int(0, 3), input));
  }
  const j = journey(steps, { timeZone: pick(['Europe/Brussels', 'America/New_York', 'Pacific/Kiritimati']),
    frequencyCap: rand() < 0.3 ? { max: 1, perDays: 2 } : null });
  // Mostly near one step's due day, where the edges of its window are.
  const near = pick(steps).trigger;
  const closingDate = rand() < 0.1 ? null
    : rand() < 0.3 || near.kind !== 'closingDate' ? day(int(-6, 14)) : day(int(-1, 1) - near.offsetDays);
  const stage = pick([...OPEN, ...OPEN, 'won'] as StageKey[]);
  const zone = pick(ZONES);
  const primary = rand() < 0.1 ? null : 1;
  const contacts = [
    contact(1, { timeZone: zone, email: pick(['anna@example.com', 'anna@example.com', 'not-an-address', null]),
      unsubscribedAt: rand() < 0.1 ? at('2026-01-01T00:00:00Z') : null, bouncedAt: rand() < 0.05 ? at('2026-01-01T00:00:00Z') : null }),
    contact(2, { timeZone: pick(ZONES) }),
  ];
  const history: PastDecision[] = [];
  for (let i = int(0, 5); i > 0; i--) {
    const [status, reason] = pick([['sent', null], ['unknown', null], ['failed', 'smtp_rejected'], ['failed', 'template_error'],
      ['suppressed', 'unsubscribed'], ['suppressed', 'unsubscribed'], ['suppressed', 'expired'], ['suppressed', 'closing_date_passed'],
      ['suppressed', 'no_contact'], ['suppressed', 'invalid_email']] as const);
    const who = pick([
      { recipient: 'anna@example.com', contactId: 1 }, { recipient: 'anna@example.com', contactId: 1 },
      { recipient: 'anna.old@example.com', contactId: 1 },
      { recipient: 'contact2@example.com', contactId: 2 }, { recipient: 'owner@agency.example', contactId: null },
      { recipient: '', contactId: null }, { recipient: 'anna@example.com', contactId: null },
    ]);
    const decidedClosing = pick([closingDate, closingDate, closingDate, day(int(-6, 14)), null]);
    history.push(decision({
      stepId: pick(steps).id, status, reason, ...who, closingDate: decidedClosing,
      occurrence: pick(['', '', decidedClosing ?? '', closingDate ?? '']), decidedAt: new Date(now.getTime() - int(1, 9 * 1440) * MINUTE).toISOString(),
    }));
  }
  const s = snapshot({
    opportunity: {
      closingDate, stage: STAGES[stage], primaryContactId: primary, amount: pick(['12000.00', '500', null]),
      ownerEmail: pick(['owner@agency.example', 'Owner@Agency.example ', null, '  ']),
      stageEnteredAt: new Date(now.getTime() - (near.kind === 'stageEntered' && rand() < 0.7
        ? near.daysAfter * 1440 + int(-1440, 1440) : int(0, 6 * 1440)) * MINUTE),
    },
    contacts,
    roles: rand() < 0.5 ? [{ contactId: 2, role: 'buyer' }] : [],
    activities: rand() < 0.3 ? [activity(1, 'call', { doneAt: new Date(now.getTime() - int(0, 2000) * MINUTE).toISOString() })] : [],
    history,
    sentToContact: rand() < 0.3 ? { 1: [new Date(now.getTime() - DAY_MS).toISOString()] } : {},
  });
  return { s, j, now };
}

describe('triage never hides a decision from evaluate', () => {
  it('holds for 50,000 random cases, and settles a fair share of them', () => {
    const rand = random(20261127);
    let settled = 0;
    let acted = 0;
    for (let i = 0; i < 50_000; i++) {
      const { s, j, now } = randomCase(rand);
      const act = acts(s, j, now);
      if (act.length > 0) acted += 1;
      if (mayNeedDecision(s.opportunity, s.history, j, now)) continue;
      settled += 1;
      if (act.length > 0) {
        throw new Error(`case ${i}: triage said nothing to decide, evaluate would do ${act.join(', ')}\n${JSON.stringify({ now, j, s: { ...s, contacts: [...s.contacts.values()] } }, null, 1)}`);
      }
    }
    // Not a property, a check that the property was exercised both ways.
    expect(settled).toBeGreaterThan(10_000);
    expect(acted).toBeGreaterThan(5_000);
  });
});
