/**
 * `explain`: what the engine thinks of each step of one opportunity at `now`, and why. It reads
 * the same `evaluate` as the scan and the worker; past decisions come from the log.
 */
import { evaluate, type RuleCheck, type StepEvaluation } from './journey/decide.ts';
import type { Journey, PastDecision, Snapshot } from './journey/types.ts';

export type ExplainVerdict = 'sent' | 'suppressed' | 'failed' | 'unknown' | 'due' | 'scheduled' | 'not_eligible';

export interface StepExplanation {
  stepId: string;
  /** The recipient's address, or null when the audience resolves to nobody. */
  recipient: string | null;
  contactId: number | null;
  dueAt: string | null;
  windowEndsAt: string | null;
  verdict: ExplainVerdict;
  reason: string | null;
  /** The rule's values, in words. */
  detail: string | null;
  /** Every rule checked, in order, passed or failed, with its values. */
  checks: RuleCheck[];
}

export function explainOpportunity(snapshot: Snapshot, journey: Journey, now: Date): StepExplanation[] {
  return evaluate(snapshot, journey, now, { explain: true }).map((e) => explainOne(e, snapshot.history, now));
}

function explainOne(e: StepEvaluation, history: readonly PastDecision[], now: Date): StepExplanation {
  const base = {
    stepId: e.step.id, recipient: e.recipient?.address || null, contactId: e.recipient?.contact?.id ?? null,
    dueAt: e.due?.dueAt.toISOString() ?? null, windowEndsAt: e.due?.windowEndsAt.toISOString() ?? null,
    checks: e.checks,
  };
  const v = e.verdict;
  switch (v.kind) {
    case 'spent': {
      const row = history.find((d) => d.stepId === e.step.id && d.occurrence === e.occurrence && d.recipient === (e.recipient?.address ?? '') && d.status === v.status);
      return { ...base, verdict: v.status as ExplainVerdict, reason: row?.reason ?? null, detail: `decided ${v.decidedAt.toISOString()}` };
    }
    case 'send':
      return { ...base, verdict: 'due', reason: null, detail: 'due now: it is sent at the next scan and work' };
    case 'scheduled':
      return { ...base, verdict: 'scheduled', reason: null, detail: v.detail };
    case 'not_eligible':
      return { ...base, verdict: 'not_eligible', reason: v.reason, detail: v.detail };
    case 'suppress': {
      // Once the window has closed, what was decided then is the answer, not what "now" would say.
      const past = e.due && now >= e.due.windowEndsAt ? lastDecision(e, history) : undefined;
      if (past) return { ...base, verdict: past.status as ExplainVerdict, reason: past.reason, detail: `decided ${past.decidedAt.toISOString()}` };
      return { ...base, verdict: 'suppressed', reason: v.reason, detail: v.detail };
    }
  }
}

function lastDecision(e: StepEvaluation, history: readonly PastDecision[]): PastDecision | undefined {
  const address = e.recipient?.address ?? '';
  return history.filter((d) => d.stepId === e.step.id && d.recipient === address && d.closingDate === e.closingDate).at(-1);
}
