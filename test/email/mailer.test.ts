/**
 * The SMTP mailer's gate against a real SMTP server on loopback: `beforeHandover` is asked once
 * the server has accepted the envelope and said go ahead to DATA, never earlier, and its answer
 * decides whether the message is completed (the final dot) or abandoned, the server keeping none.
 */
import net, { type AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { smtpMailer, type Mailer, type OutgoingEmail } from '../../src/email/mailer.ts';
import { startSend } from '../../src/send-gate.ts';
import { until } from '../helpers/daemon.ts';
import { startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.ts';

const EMAIL: OutgoingEmail = {
  from: 'Acme <sales@acme.test>', to: 'ada@customer.test', subject: 'Trip to the USA', html: '<p>Hello</p>', text: 'Hello',
  headers: {}, messageId: '<gate-test@acme.test>',
};

let sink: SmtpSink;
let mailer: Mailer;

beforeAll(async () => {
  sink = await startSmtpSink();
});

afterAll(async () => {
  await sink?.close();
});

beforeEach(async () => {
  await mailer?.close();
  mailer = smtpMailer(sink.url);
  sink.received.length = 0;
  sink.refuse(null);
  sink.stall(false);
});

describe('beforeHandover', () => {
  it('is asked only after the server accepted the recipient, and yes sends the message', async () => {
    sink.stall(true);
    let asked = 0;
    const sending = mailer.send(EMAIL, { beforeHandover: async () => { asked += 1; return true; } });
    try {
      await until('the server to hold RCPT TO', () => sink.stalled() === 1, 10_000);
      // Connected, MAIL FROM accepted, RCPT TO unanswered: too early to ask.
      await new Promise((r) => setTimeout(r, 200));
      expect(asked).toBe(0);
    } finally {
      sink.stall(false);
    }
    expect(await sending).toMatchObject({ kind: 'accepted' });
    expect(asked).toBe(1);
    expect(sink.received.map((m) => m.parsed.messageId)).toEqual(['<gate-test@acme.test>']);
  });

  it('no withdraws the message: nothing reaches the server', async () => {
    const outcome = await mailer.send(EMAIL, { beforeHandover: async () => false });
    expect(outcome.kind).toBe('withdrawn');
    expect(sink.received).toHaveLength(0);
  });

  it('after a no, the next message goes out whole and alone (the withdrawn one never completed on that connection)', async () => {
    expect((await mailer.send(EMAIL, { beforeHandover: async () => false })).kind).toBe('withdrawn');
    const next = { ...EMAIL, messageId: '<after-withdrawal@acme.test>', subject: 'The next one', text: 'Second' };
    expect(await mailer.send(next, { beforeHandover: async () => true })).toMatchObject({ kind: 'accepted' });
    expect(sink.received.map((m) => [m.parsed.messageId, m.parsed.subject, m.parsed.text?.trim()]))
      .toEqual([['<after-withdrawal@acme.test>', 'The next one', 'Second']]);
  });

  it('complete, called with the yes, writes the final dot to the socket within its own call', async () => {
    // Observed, not replaced: every write still goes to the real socket.
    const write = vi.spyOn(net.Socket.prototype, 'write');
    // The end of the data, as nodemailer writes it: the dot line, after a line break if the
    // body did not end with one.
    const END = ['.\r\n', '\n.\r\n', '\r\n.\r\n'];
    const dots = () => write.mock.calls.filter(([chunk]) => END.includes(Buffer.from(chunk as Uint8Array | string).toString('latin1'))).length;
    let during = -1;
    try {
      const outcome = await mailer.send(EMAIL, {
        beforeHandover: async (complete) => {
          await new Promise((r) => setTimeout(r, 50));
          const before = dots();
          complete();
          during = dots() - before;
          expect(before).toBe(0);
          return true;
        },
      });
      expect(outcome).toMatchObject({ kind: 'accepted' });
    } finally {
      write.mockRestore();
    }
    // A worker killed right after the claim's COMMIT was written has also written the dot, but
    // for this one synchronous call.
    expect(during).toBe(1);
    expect(sink.received.map((m) => [m.parsed.messageId, m.parsed.text?.trim()])).toEqual([['<gate-test@acme.test>', 'Hello']]);
  });

  it('a big message: the gate is asked once its body has left the process, and it goes out whole', async () => {
    const text = 'All the way across. '.repeat(200_000);
    const big = { ...EMAIL, messageId: '<big@acme.test>', html: `<p>${text}</p>`, text };
    const write = vi.spyOn(net.Socket.prototype, 'write');
    let queued = -1;
    try {
      const outcome = await mailer.send(big, {
        beforeHandover: async (complete) => {
          // Asked only once the whole body has left the process: none of it is waiting in the
          // socket's own buffer (a killed worker's kernel still sends what it was given).
          const socket = write.mock.contexts.at(-1) as net.Socket;
          queued = socket.writableLength;
          complete();
          return true;
        },
      });
      expect(outcome).toMatchObject({ kind: 'accepted' });
    } finally {
      write.mockRestore();
    }
    expect(queued).toBe(0);
    expect(sink.received.map((m) => [m.parsed.messageId, m.parsed.text?.trim().length])).toEqual([['<big@acme.test>', text.trim().length]]);
  });

  it('is not asked when the server refuses the recipient', async () => {
    sink.refuse({ code: 550, message: 'no such mailbox' });
    let asked = 0;
    const outcome = await mailer.send(EMAIL, { beforeHandover: async () => { asked += 1; return true; } });
    expect(outcome).toMatchObject({ kind: 'rejected', code: 550 });
    expect(asked).toBe(0);
  });
});

describe('the handover time limit', () => {
  it('is for the server to ask for the message: a body that takes long to go out is not cut off', async () => {
    // The real mailer, its body's transfer made slow: the gate is reached 5.5 s after the server
    // asked for the message (onMessage), as for a big message on a slow link. The limit, 5 s,
    // leaves room for the connection and the envelope on a loaded machine.
    const slow: Mailer = {
      transport: 'smtp',
      send: (email, options) => mailer.send(email, {
        onMessage: options?.onMessage,
        beforeHandover: async (complete) => {
          await new Promise((r) => setTimeout(r, 5_500));
          return options!.beforeHandover!(complete);
        },
      }),
      close: () => mailer.close(),
    };
    const { flight, handover } = startSend(slow, EMAIL, 5_000);
    expect(await handover).toEqual({ kind: 'gate' });
    flight.answer(true);
    expect(await flight.outcome).toMatchObject({ kind: 'accepted' });
    expect(sink.received.map((m) => m.parsed.messageId)).toEqual(['<gate-test@acme.test>']);
  });

  it('still ends a send whose server never asks for the message', async () => {
    sink.stall(true);
    let flight;
    try {
      const sending = startSend(mailer, EMAIL, 300);
      flight = sending.flight;
      expect(await sending.handover).toEqual({ kind: 'timeout' });
    } finally {
      sink.stall(false);
    }
    // The server asks at last: the gate, answered no at the timeout, withdraws the message.
    expect((await flight.outcome).kind).toBe('withdrawn');
    expect(sink.received).toHaveLength(0);
  });
});

describe('what a 5xx refuses', () => {
  /** A real server of the test's own that answers one command with `code`, and the mailer's outcome. */
  async function outcomeWhen(options: SMTPServerOptions, url = (port: number) => `smtp://127.0.0.1:${port}`) {
    const server = new SMTPServer({ authOptional: true, disabledCommands: ['STARTTLS'], logger: false, disableReverseLookup: true, ...options });
    server.on('error', () => {});
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const refusing = smtpMailer(url((server.server.address() as AddressInfo).port));
    try {
      return await refusing.send(EMAIL);
    } finally {
      await refusing.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }
  const refusal = (code: number, message: string) => Object.assign(new Error(message), { responseCode: code });

  it('the recipient or the message: rejected, which spends the step', async () => {
    expect(await outcomeWhen({ onRcptTo: (_a, _s, done) => done(refusal(550, '5.1.1 mailbox unavailable')) }))
      .toEqual({ kind: 'rejected', code: 550, response: '550 5.1.1 mailbox unavailable' });
    expect(await outcomeWhen({ onData: (stream, _s, done) => { stream.resume(); stream.on('end', () => done(refusal(554, '5.7.1 content rejected'))); } }))
      .toEqual({ kind: 'rejected', code: 554, response: '554 5.7.1 content rejected' });
  });

  it('after the message was handed over, whatever nodemailer says it answered: rejected, never sent again', async () => {
    // The final dot answered with a 5xx the server closes the connection on, its line unterminated:
    // nodemailer places it at CONN.
    const server = net.createServer((socket) => {
      let buffered = '';
      let data = false;
      socket.on('error', () => {});
      socket.write('220 test ESMTP\r\n');
      socket.on('data', (chunk) => {
        buffered += chunk.toString('latin1');
        for (let end = buffered.indexOf('\r\n'); end >= 0; end = buffered.indexOf('\r\n')) {
          const line = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          if (data) {
            if (line === '.') socket.end('554 5.7.1 Message rejected as spam');
          } else if (/^EHLO/i.test(line)) socket.write('250-test\r\n250 8BITMIME\r\n');
          else if (/^DATA/i.test(line)) {
            data = true;
            socket.write('354 go ahead\r\n');
          } else socket.write('250 ok\r\n');
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const closing = smtpMailer(`smtp://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      expect(await closing.send(EMAIL)).toEqual({ kind: 'rejected', code: 554, response: '554 5.7.1 Message rejected as spam' });
    } finally {
      await closing.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('Nudge itself (its connection, login, sender or relaying): deferred, naming the command, so that no step is spent by a configuration error', async () => {
    expect(await outcomeWhen({ onMailFrom: (_a, _s, done) => done(refusal(550, '5.7.1 Sender address rejected: not owned by user')) }))
      .toEqual({ kind: 'deferred', reason: '550 5.7.1 Sender address rejected: not owned by user', refusedAt: 'MAIL FROM' });
    // Nudge sets no SIZE= on MAIL FROM: a 552 there is about the sender (a quota), not this message.
    expect(await outcomeWhen({ onMailFrom: (_a, _s, done) => done(refusal(552, '5.2.2 sending quota exceeded')) }))
      .toMatchObject({ kind: 'deferred', refusedAt: 'MAIL FROM' });
    expect(await outcomeWhen({ onConnect: (_s, done) => done(refusal(554, 'No SMTP service here')) }))
      .toMatchObject({ kind: 'deferred', reason: '554 No SMTP service here', refusedAt: 'CONN' });
    // A wrong password.
    expect(await outcomeWhen(
      { authOptional: false, disabledCommands: ['STARTTLS'], allowInsecureAuth: true, onAuth: (_a, _s, done) => done(refusal(535, '5.7.8 Authentication credentials invalid')) },
      (port) => `smtp://nudge:wrong@127.0.0.1:${port}`,
    )).toMatchObject({ kind: 'deferred', reason: expect.stringMatching(/^535 /), refusedAt: expect.stringMatching(/^AUTH /) });
    // A relay that wants a login, and none is configured: refused at MAIL FROM, or as Postfix does,
    // at each recipient.
    expect(await outcomeWhen({ authOptional: false, disabledCommands: ['STARTTLS'], allowInsecureAuth: true }))
      .toMatchObject({ kind: 'deferred', reason: expect.stringMatching(/^530 /), refusedAt: 'MAIL FROM' });
    for (const text of ['5.7.1 <ada@customer.test>: Relay access denied', '5.7.1 Unable to relay', '5.7.1 relay not permitted', '5.7.1 Relaying denied',
      'sorry, that domain isn\'t in my list of allowed rcpthosts (#5.7.1)']) {
      expect(await outcomeWhen({ onRcptTo: (_a, _s, done) => done(refusal(554, text)) })).toEqual({ kind: 'deferred', reason: `554 ${text}`, refusedAt: 'RCPT TO' });
    }
    // A login wanted (RFC 4954), at whatever command.
    expect(await outcomeWhen({ onRcptTo: (_a, _s, done) => done(refusal(530, '5.7.0 Authentication required')) }))
      .toEqual({ kind: 'deferred', reason: '530 5.7.0 Authentication required', refusedAt: 'RCPT TO' });
  });
});
