/**
 * loadConfig on its own (test/cli.test.ts runs the command line's side: exit 2 and the message):
 * values that are URLs or addresses in form but cannot work, refused at start with the variable's
 * name, and the forms that must keep working.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.ts';

const BASE = { DATABASE_URL: 'postgres://root@127.0.0.1:5432/nudge' };
const PRODUCTION = { NODE_ENV: 'production', NUDGE_SECRET: 'a-secret-of-our-own-0123', SMTP_URL: 'smtp://mail.example.com:25' };

const load = (env: Record<string, string>) => loadConfig({ ...BASE, ...env });

describe('refused at start, naming the variable', () => {
  it.each([
    // An SMTP server took these, and refused every send: the daemon deferred every email for good.
    [{ MAIL_FROM: 'x@' }, /^MAIL_FROM: must be one address/],
    [{ MAIL_FROM: '@' }, /^MAIL_FROM: must be one address/],
    [{ MAIL_FROM: '"a@b" <>' }, /^MAIL_FROM: must be one address/],
    // nodemailer guessed: the email went out From "a b e <c@d>".
    [{ MAIL_FROM: 'a b c @ d e' }, /^MAIL_FROM: must be one address/],
    [{ MAIL_FROM: 'sales@example.com, ops@example.com' }, /^MAIL_FROM: must be one address/],
    // ioredis sent SELECT NaN and the command crashed; the queue had gone to database 0 meanwhile.
    [{ REDIS_URL: 'redis://127.0.0.1:6379/abc' }, /^REDIS_URL: must end with a database number after the \/ \(such as \/0\), got "\/abc"$/],
    [{ REDIS_URL: 'redis://' }, /^REDIS_URL: names no host$/],
    // ioredis takes ?db= too, and would send SELECT x.
    [{ REDIS_URL: 'redis://127.0.0.1:6379?db=x' }, /^REDIS_URL: must give a database number as \?db=, got "x"$/],
    [{ REDIS_URL: 'redis://127.0.0.1:6379?db=2', NUDGE_REDIS_CLUSTER: 'true' }, /^REDIS_URL: names database 2, but a Redis Cluster/],
    [{ SMTP_URL: 'smtp://' }, /^SMTP_URL: names no host$/],
    // The fragment swallowed the /unsubscribe/… every link adds.
    [{ PUBLIC_URL: 'https://nudge.example.com/path?q=1#frag' }, /^PUBLIC_URL: must be the address customers reach Nudge at, without a query/],
    [{ PUBLIC_URL: 'https://user:pw@nudge.example.com' }, /^PUBLIC_URL: must be the address customers reach Nudge at/],
    // Empty, but there: links became https://nudge.example.com/#/unsubscribe/….
    [{ PUBLIC_URL: 'https://nudge.example.com/#' }, /^PUBLIC_URL: must be the address customers reach Nudge at/],
    [{ PUBLIC_URL: 'https://nudge.example.com/?' }, /^PUBLIC_URL: must be the address customers reach Nudge at/],
    [{ PUBLIC_URL: 'https://@nudge.example.com' }, /^PUBLIC_URL: must be the address customers reach Nudge at/],
  ])('%o', (env, message) => {
    expect(() => load(env)).toThrow(message);
  });
});

describe('several variables wrong at once', () => {
  it('are all named in one error, not one per start', () => {
    let error: unknown;
    try {
      loadConfig({ NODE_ENV: 'production', PORT: 'x', REDIS_URL: 'nope', NUDGE_REDIS_CLUSTER: 'true' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems.map((p) => p.variable)).toEqual(['PORT', 'SMTP_URL', 'PUBLIC_URL', 'REDIS_URL', 'DATABASE_URL', 'NUDGE_SECRET']);
    expect((error as Error).message.split('\n')).toEqual([
      'PORT: must be a whole number from 0 to 65535, got "x"',
      'SMTP_URL: is required when NODE_ENV=production (writing emails to ./outbox/ is for development)',
      'PUBLIC_URL: must be an https:// URL when NODE_ENV=production (unsubscribe links in every customer email point there)',
      'REDIS_URL: is not a valid URL',
      'DATABASE_URL: is not set (expected a postgres:// or postgresql:// URL)',
      'NUDGE_SECRET: is required when NODE_ENV=production (it signs unsubscribe links)',
    ]);
  });
});

describe('still taken', () => {
  it.each([
    [{ MAIL_FROM: 'Sales <sales@example.com>' }, 'mailFrom', 'Sales <sales@example.com>'],
    [{ MAIL_FROM: 'sales@example.com' }, 'mailFrom', 'sales@example.com'],
    [{ MAIL_FROM: '"Acme, Inc." <sales@acme.example>' }, 'mailFrom', '"Acme, Inc." <sales@acme.example>'],
    [{}, 'mailFrom', 'Nudge <nudge@localhost>'],
    [{ REDIS_URL: 'redis://:secret@redis.example.com:6380/2' }, 'redisUrl', 'redis://:secret@redis.example.com:6380/2'],
    [{ REDIS_URL: 'rediss://redis.example.com/' }, 'redisUrl', 'rediss://redis.example.com/'],
    [{ PUBLIC_URL: 'https://crm.example.com/nudge/' }, 'publicUrl', 'https://crm.example.com/nudge'],
    // The scheme's case is not the check's business.
    [{ ...PRODUCTION, PUBLIC_URL: 'HTTPS://nudge.example.com' }, 'publicUrl', 'HTTPS://nudge.example.com'],
  ] as const)('%o', (env, key, value) => {
    expect(load(env)[key]).toBe(value);
  });
});

describe('a command that sends nothing', () => {
  it('takes production without SMTP_URL, PUBLIC_URL or NUDGE_SECRET, and signs with a secret no one knows', () => {
    const env = { ...BASE, NODE_ENV: 'production' };
    expect(() => loadConfig(env)).toThrow(ConfigError);
    const a = loadConfig(env, { sends: false });
    const b = loadConfig(env, { sends: false });
    expect(a.secret).toMatch(/^[0-9a-f]{64}$/);
    expect(a.secret).not.toBe(b.secret);
    expect(a.smtpUrl).toBeNull();
  });

  it('still refuses what is set and wrong', () => {
    expect(() => loadConfig({ ...BASE, NODE_ENV: 'production', NUDGE_SECRET: 'nudge-development-secret-not-for-production' }, { sends: false }))
      .toThrow(/^NUDGE_SECRET: is the development default/);
    expect(() => loadConfig({ ...BASE, NODE_ENV: 'production', SMTP_URL: 'smtp://' }, { sends: false })).toThrow(/^SMTP_URL: names no host$/);
  });
});
