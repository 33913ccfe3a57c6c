/**
 * Sealed values: JSON encrypted and authenticated (AES-256-GCM) under a key derived from
 * NUDGE_SECRET, for what must pass through Redis without naming anyone: a queue payload carries
 * ids, and whatever else it must carry (a kept send's recipient) only sealed.
 *
 * Each seal is bound to a context (`bound`): a sealed value moved to another job does not open.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { acceptedSecrets, type Secrets } from './secrets.ts';

/** A sealed value that does not open: another NUDGE_SECRET, another context, or altered. */
export class SealError extends Error {
  override name = 'SealError';
}

const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** `value` as JSON, encrypted and authenticated for `purpose` and `bound`. */
export function seal(secret: string, purpose: string, bound: string, value: unknown): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key(secret, purpose), iv);
  cipher.setAAD(Buffer.from(bound));
  const body = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
  return `${VERSION}.${Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url')}`;
}

/** What `seal` sealed with the same secret, purpose and bound; a SealError otherwise. */
export function unseal(secret: string, purpose: string, bound: string, sealed: unknown): unknown {
  if (typeof sealed !== 'string') throw new SealError('not a sealed value');
  const [version, packed, ...rest] = sealed.split('.');
  const bytes = Buffer.from(packed ?? '', 'base64url');
  if (version !== VERSION || rest.length > 0 || bytes.length < IV_BYTES + TAG_BYTES) throw new SealError('not a sealed value of this version');
  const decipher = createDecipheriv('aes-256-gcm', key(secret, purpose), bytes.subarray(0, IV_BYTES));
  decipher.setAAD(Buffer.from(bound));
  decipher.setAuthTag(bytes.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
  let text: string;
  try {
    text = Buffer.concat([decipher.update(bytes.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch {
    throw new SealError('does not open with this NUDGE_SECRET (another secret, another job, or altered)');
  }
  return JSON.parse(text) as unknown;
}

/** `unseal` with the current secret, else with each previous one; the current one's SealError when none opens it. */
export function unsealWithAny(secrets: Secrets, purpose: string, bound: string, sealed: unknown): unknown {
  let first: SealError | undefined;
  for (const secret of acceptedSecrets(secrets)) {
    try {
      return unseal(secret, purpose, bound, sealed);
    } catch (error) {
      if (!(error instanceof SealError)) throw error;
      first ??= error;
    }
  }
  throw first!;
}

function key(secret: string, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, '', `nudge:${purpose}`, 32));
}
