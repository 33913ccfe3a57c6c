/**
 * In-memory builders for the pure decision core (src/journey): snapshots, steps and journeys as
 * plain objects, no database. Defaults describe one ordinary open opportunity:
 *
 * - opportunity 1 "Trip to the USA", 12000.00 EUR, closing 2026-06-20, stage `qualification`,
 *   primary contact 1, owner `owner@agency.example`;
 * - contact 1 `anna@example.com`, no time zone (so `defaults.timeZone` applies), subscribed;
 * - journey defaults: Europe/Brussels, no frequency cap;
 * - step timing: sendAt 09:00, window 24h, no quiet hours, weekends allowed.
 *
 * Nothing here calls the code under test: times of day are parsed locally, instants are written
 * as literal ISO strings.
 */
import type {
  Activity, ActivityKind, Audience, Contact, ContactRole, FrequencyCap, Journey, LocalTime,
  Opportunity, PastDecision, Repeat, Snapshot, Stage, Step, Timing, Trigger,
} from '../../src/journey/types.ts';

export type StageKey = 'qualification' | 'needs_analysis' | 'proposal' | 'negotiation' | 'won' | 'lost';

/** The default pipeline of SPEC section 2. */
export const STAGES: Readonly<Record<StageKey, Stage>> = {
  qualification: { key: 'qualification', label: 'Qualification', probability: 10, outcome: 'open', position: 1 },
  needs_analysis: { key: 'needs_analysis', label: 'Needs analysis', probability: 25, outcome: 'open', position: 2 },
  proposal: { key: 'proposal', label: 'Proposal', probability: 50, outcome: 'open', position: 3 },
  negotiation: { key: 'negotiation', label: 'Negotiation', probability: 75, outcome: 'open', position: 4 },
  won: { key: 'won', label: 'Won', probability: 100, outcome: 'won', position: 5 },
  lost: { key: 'lost', label: 'Lost', probability: 0, outcome: 'lost', position: 6 },
};

/** An instant from a literal ISO string (always written with an explicit `Z`). */
export function at(iso: string): Date {
  if (!/Z$/.test(iso)) throw new Error(`write instants in UTC with a Z: ${iso}`);
  return new Date(iso);
}

/** `HH:MM` → LocalTime, parsed here (not by the code under test). */
export function hm(text: string): LocalTime {
  const m = /^(\d{2}):(\d{2})$/.exec(text);
  if (!m) throw new Error(`not HH:MM: ${text}`);
  return { hour: Number(m[1]), minute: Number(m[2]) };
}

export const HOUR = 60;
export const DAY = 1440;

export interface TimingInput {
  sendAt?: string;
  /** Minutes. @defaultValue 1440 */
  windowMinutes?: number;
  /** `[from, to]` local HH:MM, or null. */
  quietHours?: [string, string] | null;
  skipWeekends?: boolean;
}

export function timing(input: TimingInput = {}): Timing {
  const q = input.quietHours ?? null;
  return {
    sendAt: hm(input.sendAt ?? '09:00'),
    windowMinutes: input.windowMinutes ?? DAY,
    quietHours: q ? { from: hm(q[0]), to: hm(q[1]) } : null,
    skipWeekends: input.skipWeekends ?? false,
  };
}

export interface StepInput {
  template?: string;
  to?: Audience;
  stages?: readonly string[] | null;
  minProbability?: number | null;
  minAmount?: string | null;
  skipIfRecentActivityMinutes?: number | null;
  repeat?: Repeat;
  timing?: TimingInput;
}

export function step(id: string, trigger: Trigger, input: StepInput = {}): Step {
  return {
    id,
    template: input.template ?? id,
    trigger,
    to: input.to ?? { kind: 'primary' },
    stages: input.stages ?? null,
    minProbability: input.minProbability ?? null,
    minAmount: input.minAmount ?? null,
    skipIfRecentActivityMinutes: input.skipIfRecentActivityMinutes ?? null,
    repeat: input.repeat ?? 'never',
    timing: timing(input.timing),
    line: 1,
  };
}

/** A `closingDate: { daysBefore: n }` step. */
export function daysBefore(id: string, n: number, input: StepInput = {}): Step {
  return step(id, { kind: 'closingDate', offsetDays: -n }, input);
}

/** A `closingDate: { daysAfter: n }` step (owner steps in real journeys). */
export function daysAfter(id: string, n: number, input: StepInput = {}): Step {
  return step(id, { kind: 'closingDate', offsetDays: n }, input);
}

/** A `stageEntered: { stage, daysAfter: n }` step. */
export function stageEntered(id: string, stage: string, n: number, input: StepInput = {}): Step {
  return step(id, { kind: 'stageEntered', stage, daysAfter: n }, input);
}

export const OWNER: Audience = { kind: 'owner' };
export function role(name: string): Audience {
  return { kind: 'role', role: name };
}

export function journey(steps: Step[], defaults: { timeZone?: string; frequencyCap?: FrequencyCap | null } = {}): Journey {
  return {
    file: 'test/journeys.yaml',
    defaults: { timeZone: defaults.timeZone ?? 'Europe/Brussels', frequencyCap: defaults.frequencyCap ?? null },
    steps,
  };
}

export function contact(id: number, input: Partial<Omit<Contact, 'id'>> = {}): Contact {
  return {
    id,
    email: 'email' in input ? input.email ?? null : id === 1 ? 'anna@example.com' : `contact${id}@example.com`,
    firstName: input.firstName ?? 'Anna',
    lastName: input.lastName ?? 'Peeters',
    locale: input.locale ?? 'en',
    timeZone: input.timeZone ?? null,
    unsubscribedAt: input.unsubscribedAt ?? null,
    bouncedAt: input.bouncedAt ?? null,
  };
}

export interface OpportunityInput extends Partial<Omit<Opportunity, 'stage'>> {
  stage?: StageKey | Stage;
}

export function opportunity(input: OpportunityInput = {}): Opportunity {
  const stage = input.stage === undefined ? STAGES.qualification : typeof input.stage === 'string' ? STAGES[input.stage] : input.stage;
  return {
    id: input.id ?? 1,
    title: input.title ?? 'Trip to the USA',
    amount: 'amount' in input ? input.amount ?? null : '12000.00',
    currency: input.currency ?? 'EUR',
    closingDate: 'closingDate' in input ? input.closingDate ?? null : '2026-06-20',
    stage,
    primaryContactId: 'primaryContactId' in input ? input.primaryContactId ?? null : 1,
    ownerEmail: 'ownerEmail' in input ? input.ownerEmail ?? null : 'owner@agency.example',
    stageEnteredAt: input.stageEnteredAt ?? at('2026-05-01T10:00:00Z'),
    createdAt: input.createdAt ?? at('2026-05-01T10:00:00Z'),
    updatedAt: input.updatedAt ?? at('2026-05-01T10:00:00Z'),
  };
}

export function activity(id: number, kind: ActivityKind, times: { doneAt?: string; dueAt?: string }): Activity {
  return { id, kind, doneAt: times.doneAt ? at(times.doneAt) : null, dueAt: times.dueAt ? at(times.dueAt) : null };
}

export interface DecisionInput extends Partial<Omit<PastDecision, 'decidedAt'>> {
  stepId: string;
  status: PastDecision['status'];
  decidedAt?: string;
}

/** A past `deliveries` row; recipient anna@example.com, occurrence '', closing date 2026-06-20 unless told. */
export function decision(input: DecisionInput): PastDecision {
  return {
    stepId: input.stepId,
    occurrence: input.occurrence ?? '',
    recipient: input.recipient ?? 'anna@example.com',
    contactId: 'contactId' in input ? input.contactId ?? null : 1,
    status: input.status,
    reason: input.reason ?? null,
    closingDate: 'closingDate' in input ? input.closingDate ?? null : '2026-06-20',
    decidedAt: at(input.decidedAt ?? '2026-06-01T07:00:00Z'),
  };
}

export interface SnapshotInput {
  opportunity?: OpportunityInput;
  /** @defaultValue [contact(1)] */
  contacts?: Contact[];
  roles?: ContactRole[];
  activities?: Activity[];
  history?: PastDecision[];
  /** Contact id → ISO instants of Nudge emails sent to that contact. */
  sentToContact?: Record<number, string[]>;
}

export function snapshot(input: SnapshotInput = {}): Snapshot {
  const contacts = input.contacts ?? [contact(1)];
  return {
    opportunity: opportunity(input.opportunity),
    contacts: new Map(contacts.map((c) => [c.id, c])),
    roles: input.roles ?? [],
    activities: input.activities ?? [],
    history: input.history ?? [],
    sentToContact: new Map(Object.entries(input.sentToContact ?? {}).map(([id, times]) => [Number(id), times.map(at)])),
  };
}
