/**
 * Mail transport behind one small interface. SMTP (pooled) when SMTP_URL is set; otherwise .eml
 * files in ./outbox/ for development, which the configuration refuses in production.
 *
 * Every outcome is classified, because the worker's record depends on it:
 * - accepted: the server said 2xx after the message.
 * - rejected: a permanent 5xx to this recipient or this message (failed, smtp_rejected, never
 *   retried).
 * - deferred: nothing was accepted (4xx, connection refused, timeout before the message was
 *   handed over), or a 5xx that refuses Nudge itself rather than this email (its connection, its
 *   login, its sender, relaying for it: `refusedAt`), which the operator must fix and after which
 *   every email is still to send: safe to retry.
 * - unknown: the connection was lost after the whole message was handed over and before the
 *   server's reply. The server may have accepted it; resending could mean a second email.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import nodemailer, { type SendMailOptions } from 'nodemailer';
import MailComposer from 'nodemailer/lib/mail-composer';

export interface OutgoingEmail {
  from: string;
  to: string;
  subject: string;
  html: string;
  text: string;
  /** Extra headers (List-Unsubscribe, X-Nudge-*). */
  headers: Record<string, string>;
  /** Message-ID, with angle brackets. */
  messageId: string;
}

export type SendOutcome =
  | { kind: 'accepted'; response: string }
  | { kind: 'rejected'; code: number; response: string }
  /**
   * `refusedAt`: the SMTP command a 5xx answered when it refused Nudge itself rather than this
   * email (`CONN`, `EHLO`, `AUTH PLAIN`, `MAIL FROM`, or `RCPT TO` refusing to relay): a
   * configuration the operator must fix.
   */
  | { kind: 'deferred'; reason: string; refusedAt?: string }
  | { kind: 'unknown'; reason: string }
  /** `beforeHandover` said no: nothing was handed over, and the caller already knows why. */
  | { kind: 'withdrawn'; reason: string };

export interface SendOptions {
  /**
   * Called once, just before the message is handed over: for SMTP, after the server accepted the
   * envelope, said go ahead to DATA and was given the message's body, before the final dot that
   * completes it (a refusal before that ends the send without asking). Resolving false aborts the
   * send with nothing handed over: the server keeps nothing (outcome `withdrawn`).
   *
   * `complete`, called by the one who answers yes right before it does, writes the end of the
   * message at once, in that very call, where the transport can (for SMTP, the final dot straight
   * to the socket, when nothing of the message is still waiting in a buffer); otherwise it does
   * nothing and the end follows the yes a few ticks later.
   */
  beforeHandover?: (complete: () => void) => Promise<boolean>;
  /** Called once, when the server has said go ahead to DATA and the message starts to go out. */
  onMessage?: () => void;
}

export interface Mailer {
  readonly transport: 'smtp' | 'outbox';
  send(email: OutgoingEmail, options?: SendOptions): Promise<SendOutcome>;
  close(): Promise<void>;
}

class HandoverRefused extends Error {
  override name = 'HandoverRefused';
}

export async function buildMessage(email: OutgoingEmail): Promise<Buffer> {
  const composer = new MailComposer({
    from: email.from, to: email.to, subject: email.subject, html: email.html, text: email.text,
    headers: email.headers, messageId: email.messageId, date: new Date(),
  });
  return composer.compile().build();
}

export interface SmtpOptions {
  /** Pooled connections. @defaultValue 5 */
  maxConnections?: number;
  /** Milliseconds to wait for a connection, the greeting, and any reply. @defaultValue 10000 / 10000 / 30000 */
  connectionTimeout?: number;
  greetingTimeout?: number;
  socketTimeout?: number;
}

export function smtpMailer(url: string, options: SmtpOptions = {}): Mailer {
  const transport = nodemailer.createTransport({
    url, pool: true, maxConnections: options.maxConnections ?? 5,
    connectionTimeout: options.connectionTimeout ?? 10_000,
    greetingTimeout: options.greetingTimeout ?? 10_000,
    socketTimeout: options.socketTimeout ?? 30_000,
  });
  // The message stream nodemailer builds is read ahead (into its own buffers) as soon as a
  // connection is free, before MAIL FROM; the stream the SMTP connection itself consumes is the
  // last one of the message's process functions, and it is first read after the server's 354 to
  // DATA. That is where the gate goes, at its end.
  transport.use('stream', (mail, done) => {
    const gate = (mail.data as GatedData)[GATE];
    if (gate) mail.message.processFunc((input) => gatedStream(input, gate));
    done();
  });
  return {
    transport: 'smtp',
    async send(email, options = {}) {
      const raw = await buildMessage(email);
      const gate: Gate = {
        ask: options.beforeHandover ?? (() => Promise.resolve(true)), started: options.onMessage ?? (() => {}), refused: false, handedOver: false,
      };
      try {
        const data: GatedData = { envelope: { from: envelopeAddress(email.from), to: [email.to] }, raw, [GATE]: gate };
        const info = await transport.sendMail(data);
        return { kind: 'accepted', response: String((info as { response?: string }).response ?? '') };
      } catch (error) {
        if (gate.refused) return { kind: 'withdrawn', reason: 'withdrawn before handover; nothing was handed over' };
        return classify(error as SmtpError, gate.handedOver);
      }
    },
    async close() {
      transport.close();
    },
  };
}

const GATE = 'nudgeGate';

interface Gate {
  ask: (complete: () => void) => Promise<boolean>;
  /** The connection started reading the message (after the server's go-ahead to DATA). */
  started: () => void;
  /** The gate said no: nothing was handed over. */
  refused: boolean;
  /** The whole message went to the connection. */
  handedOver: boolean;
}

type GatedData = SendMailOptions & { [GATE]?: Gate };

interface SmtpError extends Error {
  code?: string;
  responseCode?: number;
  response?: string;
  command?: string;
}

/**
 * nodemailer reports a 421 and a 550 alike as EENVELOPE: classify by the reply code, and a 5xx by
 * the command it answered. Only a 5xx to the recipient (RCPT TO) or to the message (DATA, its
 * final dot: whatever nodemailer says it answered once the message was handed over) refuses this
 * email: it spends the step (failed, smtp_rejected). A 5xx to the greeting, EHLO, STARTTLS, AUTH
 * (a wrong password) or MAIL FROM (a sender the server will not take: MAIL_FROM, a quota), a 530
 * (a login wanted, RFC 4954) or a refusal to relay refuses every email alike, whoever the
 * recipient: recorded as failed, every customer's step would be spent by a configuration error.
 * It is a deferral (`refusedAt`), retried with backoff like a server that cannot be reached, and
 * the emails go once it is fixed.
 */
export function classify(error: SmtpError, handedOver: boolean): SendOutcome {
  const code = error.responseCode;
  const text = error.response || error.message;
  const reason = text.startsWith(String(code)) ? text : `${code} ${text}`;
  if (code && code >= 500) {
    // After the message was handed over, a 5xx answers it (nodemailer says CONN for a reply the
    // server closed the connection on, unterminated): never a deferral, which would send it again.
    if (handedOver || refusesThisEmail(error.command, code, text)) return { kind: 'rejected', code, response: text };
    return { kind: 'deferred', reason, refusedAt: error.command ?? 'CONN' };
  }
  if (code && code >= 400) return { kind: 'deferred', reason };
  if (handedOver) return { kind: 'unknown', reason: `${error.code ?? 'error'}: ${error.message} (after the message was handed over)` };
  return { kind: 'deferred', reason: `${error.code ?? 'error'}: ${error.message}` };
}

/**
 * Whether a 5xx to `command` refuses this recipient or this message, not the session (`classify`).
 * A relay that will not relay for Nudge says so to RCPT TO, for every outside recipient alike
 * (Postfix `Relay access denied`, Exim `relay not permitted`, Sendmail `Relaying denied`, Exchange
 * `Unable to relay`, qmail `not in my list of allowed rcpthosts`): a login missing from
 * SMTP_URL, not a bad mailbox.
 */
function refusesThisEmail(command: string | undefined, code: number, text: string): boolean {
  // Authentication required (RFC 4954), at whatever command the server asks for it.
  if (code === 530) return false;
  // A reply nodemailer does not place (no command) is taken as about the email, as it always was.
  if (command === undefined || command === 'DATA') return true;
  return command === 'RCPT TO' && !RELAY_REFUSED.test(text);
}

/** A relay refusing to relay, as Postfix, Exim, Sendmail, Exchange and qmail word it. */
const RELAY_REFUSED = /relay(ing)? (access )?(denied|not permitted|not allowed|prohibited|refused)|unable to relay|do not relay|rcpthosts/i;

/**
 * The message as the SMTP connection reads it, asking `gate` before its end: the connection reads
 * only once the server has said go ahead to DATA, and the final dot (which alone makes the server
 * keep the message) is written only when this stream ends. So the body goes out (and has left the
 * process) before the gate is asked, and a yes is followed by nothing but the dot, written within
 * the call that says yes (`complete`): a process killed in between leaves a claim the server never
 * got only if killed inside that call. A no destroys the stream before its end: the connection is
 * closed without the dot, and the server keeps nothing.
 */
function gatedStream(input: Readable, gate: Gate): Readable {
  // The stream the connection pipes this one into (nodemailer's dot-escaping DataStream, itself
  // piped into the socket): ending it writes the final dot.
  let destination: Writable | null = null;
  const complete = () => {
    // Only when all of the body has gone through to it: then its end (the dot) reaches the socket
    // synchronously, within the caller's call. The generator's end ends it again, a no-op.
    if (!destination || output.destroyed || destination.destroyed || output.readableLength > 0 || destination.writableLength > 0 || destination.writableEnded) return;
    gate.handedOver = true;
    destination.end();
  };
  const output = Readable.from((async function* () {
    gate.started();
    yield* input;
    await bodyWritten(destination);
    if (!(await gate.ask(complete))) {
      gate.refused = true;
      throw new HandoverRefused('withdrawn before handover; the message was not completed');
    }
  })(), { objectMode: false });
  const pipe = output.pipe.bind(output);
  output.pipe = <T extends NodeJS.WritableStream>(dest: T, options?: { end?: boolean }): T => {
    if (dest instanceof Writable) destination = dest;
    return pipe(dest, options);
  };
  output.on('end', () => { gate.handedOver = true; });
  return output;
}

/**
 * Waits until what the connection was given of the message has left the process (is in the
 * kernel's socket buffer, which a killed process still sends): a large body still queued in the
 * socket's own buffer when the claim commits would be lost with a killed worker, with its claim.
 * The socket is the one `destination` pipes into (Node keeps a stream's pipe destinations in
 * `_readableState.pipes`); none found, it does not wait.
 */
async function bodyWritten(destination: Writable | null): Promise<void> {
  const pipes = (destination as { _readableState?: { pipes?: unknown } } | null)?._readableState?.pipes;
  const socket = Array.isArray(pipes) ? pipes.find((p): p is Writable => p instanceof Writable) : undefined;
  if (!socket || !destination) return;
  const readable = destination as unknown as Readable;
  while (readable.readableLength > 0 || socket.writableLength > 0) {
    if (socket.destroyed || socket.writableEnded) break;
    await new Promise<void>((resolve) => {
      const done = () => { clearTimeout(timer); socket.off('drain', done); resolve(); };
      const timer = setTimeout(done, 5);
      socket.once('drain', done);
    });
  }
  // Lost before the handover: nothing to ask about, the send ends as deferred.
  if (socket.destroyed || socket.writableEnded) throw new Error('the connection closed before the message was handed over');
}

function envelopeAddress(from: string): string {
  const m = /<([^>]+)>/.exec(from);
  return (m ? m[1]! : from).trim();
}

/** Development transport: each email becomes a .eml file; nothing leaves the machine. */
export function outboxMailer(dir: string): Mailer {
  return {
    transport: 'outbox',
    async send(email, options = {}) {
      if (options.beforeHandover && !(await options.beforeHandover(() => {}))) {
        return { kind: 'withdrawn', reason: 'withdrawn before handover; nothing was written' };
      }
      await fs.mkdir(dir, { recursive: true });
      const raw = await buildMessage(email);
      const name = email.messageId.replace(/[<>]/g, '').replace(/[^A-Za-z0-9._-]/g, '_');
      const file = path.join(dir, `${name}.eml`);
      await fs.writeFile(file, raw);
      return { kind: 'accepted', response: `written to ${file}` };
    },
    async close() {},
  };
}

export function createMailer(config: { smtpUrl: string | null; outboxDir: string }): Mailer {
  return config.smtpUrl ? smtpMailer(config.smtpUrl) : outboxMailer(config.outboxDir);
}
