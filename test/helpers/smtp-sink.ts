/**
 * A real SMTP server on loopback (smtp-server, STARTTLS disabled) that keeps what it receives,
 * parsed by mailparser, and can be told to refuse: per recipient, or for everything for a while, or
 * the sender; to drop the connection after the message; or to stall, leaving RCPT TO unanswered.
 */
import type { AddressInfo } from 'node:net';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';

export interface ReceivedEmail {
  envelopeTo: string[];
  /** When the message's final dot came in (Date.now()), before it was parsed. */
  at: number;
  raw: string;
  parsed: ParsedMail;
}

export interface SmtpSink {
  url: string;
  port: number;
  received: ReceivedEmail[];
  /** RCPT TO commands seen per address (refused or not): how often each recipient was tried. */
  rcptAttempts: Map<string, number>;
  /** Reply to RCPT TO with this code and text for matching recipients (e.g. 550), or to everything. */
  refuse(rule: { code: number; message: string; recipient?: (address: string) => boolean } | null): void;
  /** Reply to every MAIL FROM with this code and text (e.g. 550: a sender the server will not take). */
  refuseSender(rule: { code: number; message: string } | null): void;
  /** Keep the message, then drop the connection before replying to its final dot. */
  dropAfterData(on: boolean): void;
  /**
   * Leave every RCPT TO unanswered while on (a server that never gets to DATA); turning it off
   * answers the held ones (250, or the refusal rule).
   */
  stall(on: boolean): void;
  /** RCPT TO commands held unanswered right now. */
  stalled(): number;
  /** Answer each message's final dot only after this many milliseconds (0: at once). */
  slow(ms: number): void;
  /**
   * Resolves true once no client is connected and no message is still being read, false if `ms` passed first:
   * a message whose final dot a killed process wrote still arrives after the kill, and must be
   * counted by the test that killed it, not by the next one.
   */
  settled(ms?: number): Promise<boolean>;
  /**
   * The server crashes: its connections cut without a word (a message whose final dot came in
   * is kept, unanswered), new ones refused, until `start` listens on the same port again.
   */
  crash(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function startSmtpSink(): Promise<SmtpSink> {
  const received: ReceivedEmail[] = [];
  const rcptAttempts = new Map<string, number>();
  let rule: Parameters<SmtpSink['refuse']>[0] = null;
  let senderRule: Parameters<SmtpSink['refuseSender']>[0] = null;
  let drop = false;
  let stalling = false;
  let answerAfterMs = 0;
  const held: (() => void)[] = [];
  let reading = 0;
  const onRcptTo: NonNullable<SMTPServerOptions['onRcptTo']> = (address, session, callback) => {
    if (stalling) {
      held.push(() => onRcptTo(address, session, callback));
      return;
    }
    rcptAttempts.set(address.address, (rcptAttempts.get(address.address) ?? 0) + 1);
    if (rule && (!rule.recipient || rule.recipient(address.address))) {
      const error = Object.assign(new Error(rule.message), { responseCode: rule.code });
      return callback(error);
    }
    callback();
  };
  const options: SMTPServerOptions = {
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    // Each connection would otherwise wait for a reverse lookup of 127.0.0.1 (up to 1.5 s where
    // DNS is slow) before its greeting, inside the time limits some tests set on a send.
    disableReverseLookup: true,
    onMailFrom(_address, _session, callback) {
      callback(senderRule ? Object.assign(new Error(senderRule.message), { responseCode: senderRule.code }) : undefined);
    },
    onRcptTo,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      reading += 1;
      let read = false;
      const done = () => {
        if (!read) reading -= 1;
        read = true;
      };
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', done);
      stream.on('end', () => {
        const at = Date.now();
        const raw = Buffer.concat(chunks).toString('utf8');
        simpleParser(raw).finally(done).then((parsed) => {
          received.push({ envelopeTo: session.envelope.rcptTo.map((r) => r.address), at, raw, parsed });
          if (!drop) {
            if (answerAfterMs > 0) setTimeout(() => callback(), answerAfterMs);
            else callback();
            return;
          }
          for (const c of connections()) if (c.id === session.id) c._socket.destroy();
        }, callback);
      });
    },
  };
  const listen = async (on: number) => {
    const server = new SMTPServer(options);
    // Clients that vanish (a worker killed mid-send) reset their connections: expected here.
    server.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      server.server.once('error', reject);
      server.listen(on, '127.0.0.1', () => resolve());
    });
    return server;
  };
  let server = await listen(0);
  let running = true;
  const port = (server.server.address() as AddressInfo).port;
  // smtp-server keeps its connections in a Set; the session id names one.
  const connections = () => (server as unknown as { connections: Set<{ id: string; _socket: { destroy(): void } }> }).connections;
  return {
    url: `smtp://127.0.0.1:${port}`,
    port,
    received,
    rcptAttempts,
    refuse(r) {
      rule = r;
    },
    refuseSender(r) {
      senderRule = r;
    },
    dropAfterData(on) {
      drop = on;
    },
    stall(on) {
      stalling = on;
      if (!on) for (const answer of held.splice(0)) answer();
    },
    stalled: () => held.length,
    slow(ms) {
      answerAfterMs = ms;
    },
    async settled(ms = 10_000) {
      const until = Date.now() + ms;
      const busy = () => connections().size > 0 || reading > 0;
      while (busy() && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      return !busy();
    },
    async crash() {
      running = false;
      const closed = new Promise<void>((resolve) => server.server.close(() => resolve()));
      for (const c of connections()) c._socket.destroy();
      await closed;
    },
    async start() {
      server = await listen(port);
      running = true;
    },
    close: () => {
      stalling = false;
      for (const answer of held.splice(0)) answer();
      if (!running) return Promise.resolve();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
