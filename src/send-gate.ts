/**
 * A send started but held at its handover: the mailer's `beforeHandover` gate is answered by the
 * caller, later, once it has done what must come first (claim the send and commit the claim).
 */
import type { Mailer, OutgoingEmail, SendOutcome } from './email/mailer.ts';

export interface InFlight {
  /**
   * Answers the gate: true lets the message go (its end written within this call where the mailer
   * can), false withdraws it. Only the first answer counts.
   */
  answer(go: boolean): void;
  /** How the send ended. Never rejects. */
  outcome: Promise<SendOutcome>;
}

/** What happened first: the gate (only the final dot left), the send ended before that, or the time ran out. */
export type Handover =
  | { kind: 'gate' }
  | { kind: 'settled'; outcome: SendOutcome }
  | { kind: 'timeout' };

/**
 * Starts `mailer.send` and reports whether it reached the gate (the SMTP server said go ahead to
 * DATA and has the body; only the final dot is left) or ended before it; or a timeout, when the
 * server has not asked for the message within `timeoutMs`. On a timeout the gate is answered no at
 * once, so a send that reaches it later is abandoned.
 */
export function startSend(mailer: Mailer, email: OutgoingEmail, timeoutMs: number): { flight: InFlight; handover: Promise<Handover> } {
  let resolveAnswer!: (go: boolean) => void;
  const answered = new Promise<boolean>((resolve) => { resolveAnswer = resolve; });
  let complete: (() => void) | null = null;
  let given = false;
  const answer = (go: boolean) => {
    if (given) return;
    given = true;
    try {
      if (go) complete?.();
    } finally {
      resolveAnswer(go);
    }
  };
  let timer: NodeJS.Timeout | undefined;
  let reached!: () => void;
  const gate = new Promise<Handover>((resolve) => { reached = () => resolve({ kind: 'gate' }); });
  const outcome = mailer.send(email, {
    // The time limit is for the server to ask for the message. Once the message goes out, a
    // large body on a slow link takes what it takes; a transfer that stalls is ended by the
    // connection's own timeout.
    onMessage: () => clearTimeout(timer),
    beforeHandover: (completeNow) => {
      complete = completeNow;
      reached();
      return answered;
    },
  }).catch((error: Error): SendOutcome => ({ kind: 'deferred', reason: `error: ${error.message}` }));
  const timeout = new Promise<Handover>((resolve) => {
    timer = setTimeout(() => {
      answer(false);
      resolve({ kind: 'timeout' });
    }, timeoutMs);
  });
  const settled = outcome.then((o): Handover => ({ kind: 'settled', outcome: o }));
  const handover = Promise.race([gate, settled, timeout]).finally(() => clearTimeout(timer));
  return { flight: { answer, outcome }, handover };
}
