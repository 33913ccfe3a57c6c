/**
 * Unsubscribe tokens: the contact id, signed with HMAC-SHA256 under NUDGE_SECRET. A forged or
 * altered token verifies to nothing.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { parseInt8 } from './db/database.ts';
import { acceptedSecrets, type Secrets } from './secrets.ts';

export function signUnsubscribeToken(contactId: number, secret: string): string {
  const payload = `c${contactId}`;
  return `${payload}.${mac(payload, secret)}`;
}

/**
 * The contact id a token was signed for, or null when it is malformed or forged. A token signed
 * with one of the previous secrets (a rotation replaced them) is accepted too: the link is in an
 * email already sent.
 */
export function verifyUnsubscribeToken(token: string, secrets: Secrets): number | null {
  const m = /^c(\d{1,19})\.([A-Za-z0-9_-]{43})$/.exec(token);
  if (!m) return null;
  const given = Buffer.from(m[2]!);
  const signedWith = (key: string) => {
    const expected = Buffer.from(mac(`c${m[1]}`, key));
    return expected.length === given.length && timingSafeEqual(expected, given);
  };
  if (!acceptedSecrets(secrets).some(signedWith)) return null;
  // An id beyond 2^53 stays its exact decimal text, as it was read and signed (`parseInt8`).
  return parseInt8(m[1]!);
}

function mac(payload: string, secret: string): string {
  return createHmac('sha256', secret).update(`nudge-unsubscribe:${payload}`).digest('base64url');
}
