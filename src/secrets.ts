/** NUDGE_SECRET and the secrets a rotation replaced (NUDGE_SECRET_PREVIOUS), as signing and sealing take them. */
export interface Secrets {
  /** What new tokens and seals are made with. */
  secret: string;
  /** Newest first: still accepted for what they made (links in emails already sent, kept sends). */
  previousSecrets?: readonly string[];
}

/** Every secret accepted, the current one first. */
export function acceptedSecrets(secrets: Secrets): string[] {
  return [secrets.secret, ...(secrets.previousSecrets ?? [])];
}
