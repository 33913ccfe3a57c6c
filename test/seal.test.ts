import { describe, expect, it } from 'vitest';
import { seal, SealError, unseal } from '../src/seal.ts';

const SECRET = 'test-secret-0123456789abcdef';
const VALUE = { recipient: 'ada@customer.test', reply: '250 2.0.0 queued as 4XyZ' };

describe('a sealed value', () => {
  it('opens with the same secret, purpose and bound, and shows nothing of what it holds', () => {
    const sealed = seal(SECRET, 'kept-send', 'o1.step.7', VALUE);
    expect(unseal(SECRET, 'kept-send', 'o1.step.7', sealed)).toEqual(VALUE);
    expect(sealed).toMatch(/^v1\.[A-Za-z0-9_-]+$/);
    expect(sealed).not.toMatch(/ada|customer|queued/);
    expect(Buffer.from(sealed.slice(3), 'base64url').toString('latin1')).not.toMatch(/ada@customer|queued/);
    // A fresh IV each time: two seals of one value differ.
    expect(seal(SECRET, 'kept-send', 'o1.step.7', VALUE)).not.toBe(sealed);
  });

  it('does not open with another secret, purpose or bound, altered, or malformed', () => {
    const sealed = seal(SECRET, 'kept-send', 'o1.step.7', VALUE);
    const bytes = Buffer.from(sealed.slice(3), 'base64url');
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 1, bytes.length - 1);
    const cases: [string, string, string, string][] = [
      ['another-secret-0123456789abcdef', 'kept-send', 'o1.step.7', sealed],
      [SECRET, 'another-purpose', 'o1.step.7', sealed],
      [SECRET, 'kept-send', 'o2.step.7', sealed],
      [SECRET, 'kept-send', 'o1.step.7', `v1.${bytes.toString('base64url')}`],
      [SECRET, 'kept-send', 'o1.step.7', 'v1.short'],
      [SECRET, 'kept-send', 'o1.step.7', `v2.${sealed.slice(3)}`],
      [SECRET, 'kept-send', 'o1.step.7', ''],
    ];
    for (const [secret, purpose, bound, value] of cases) {
      expect(() => unseal(secret, purpose, bound, value), `${purpose} ${bound} ${value.slice(0, 12)}`).toThrow(SealError);
    }
    // What JSON from elsewhere may hold instead of a sealed string.
    for (const value of [undefined, null, 42, { sealed: sealed }]) {
      expect(() => unseal(SECRET, 'kept-send', 'o1.step.7', value), JSON.stringify(value)).toThrow(SealError);
    }
  });
});
