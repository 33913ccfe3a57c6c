/**
 * The raw delivery path: render + compose + SMTP send of an email whose snapshot and decision are
 * already in memory. No queue, no database, no claim: what delivery costs at the least.
 */
import { loadSnapshot } from '../../src/db/snapshots.ts';
import { composeEmail, templateContext, type ComposeSettings } from '../../src/email/compose.ts';
import type { Mailer, SendOutcome } from '../../src/email/mailer.ts';
import type { Templates } from '../../src/email/templates.ts';
import { evaluate } from '../../src/journey/decide.ts';
import type { Recipient } from '../../src/journey/recipients.ts';
import type { Snapshot, Step } from '../../src/journey/types.ts';
import type { DeliverJob } from '../../src/queue/queues.ts';
import { snapshotNeeds } from '../../src/scan.ts';
import type { BenchContext } from './context.ts';
import { sinkKey } from './smtp-sink.ts';

export interface DirectEmail {
  key: string;
  job: { id: string; data: DeliverJob };
  snapshot: Snapshot;
  step: Step;
  recipient: Recipient;
  occurrence: string;
}

/** Loads and decides, untimed, the first `n` jobs that are still sends at `now`. */
export async function prepareDirect(ctx: BenchContext, n: number): Promise<DirectEmail[]> {
  const { now } = ctx.settings;
  const out: DirectEmail[] = [];
  for (const job of ctx.jobs) {
    if (out.length >= n) break;
    const snapshot = await loadSnapshot(ctx.big.db, job.data.opportunityId, snapshotNeeds(ctx.journey, now));
    if (!snapshot) continue;
    const e = evaluate(snapshot, ctx.journey, now).find((x) => x.step.id === job.data.stepId && x.verdict.kind === 'send' && x.recipient);
    if (!e) continue;
    out.push({ key: sinkKey(job.data.opportunityId, job.data.stepId), job, snapshot, step: e.step, recipient: e.recipient!, occurrence: e.occurrence });
  }
  return out;
}

export function composeSettings(ctx: BenchContext): ComposeSettings {
  const { mailFrom, publicUrl, secret } = ctx.rt.config;
  return { mailFrom, publicUrl, secret };
}

export async function renderAndSend(templates: Templates, compose: ComposeSettings, mailer: Mailer, e: DirectEmail): Promise<SendOutcome> {
  const rendered = templates.render(e.step.template, templateContext(e.snapshot, e.recipient, compose),
    { locale: e.recipient.locale, timeZone: e.recipient.timeZone });
  return mailer.send(composeEmail(rendered, e.snapshot, e.step, e.recipient, e.occurrence, compose));
}

/** At most `limit` calls of `fn` at once, in order of arrival; a finishing call hands its slot on. */
export function limiter(limit: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async (fn) => {
    if (active >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    else active += 1;
    try {
      return await fn();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else active -= 1;
    }
  };
}
