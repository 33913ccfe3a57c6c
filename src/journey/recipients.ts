/** Who a step's audience resolves to, for one opportunity at one moment. */
import { createHash } from 'node:crypto';
import { isValidTimeZone } from './time.ts';
import type { Audience, Contact, DecisionSnapshot, JourneyDefaults, Step } from './types.ts';

export interface Recipient {
  /** The normalised address (trimmed, lower-case), or `''` when the recipient has none. */
  address: string;
  /** The contact, or null for the owner. */
  contact: Contact | null;
  audience: Audience['kind'];
  /** The zone due times are computed in: the contact's, else `defaults.timeZone`. */
  timeZone: string;
  /** True when the contact named a zone this runtime does not know (a warning, not an error). */
  unknownZone: string | null;
  locale: string;
}

// Deliberately plain: one @, no spaces, quotes or angle brackets, a dot in the domain. Anything a
// mail server would reject or a header could be abused with is refused.
const EMAIL = /^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:".]+(\.[^\s@<>()[\]\\,;:".]+)+$/;

/**
 * The address as decisions record it: trimmed, lower-case. One longer than a valid address can be
 * (254) is kept as its start and its length, still not valid (it holds spaces): the CRM may hold
 * kilobytes there, and the row that suppresses it must fit PostgreSQL's unique indexes (a 3 KB
 * address failed the whole scan's write of its page, and so every send of every scan).
 */
export function normalizeEmail(email: string | null): string {
  const address = (email ?? '').trim().toLowerCase();
  if (address.length <= MAX_ADDRESS) return address;
  // Cut between characters (half an emoji would be stored as U+FFFD and never match again), and
  // told apart from another address that starts alike by a digest of the whole.
  const start = Array.from(address).slice(0, 200).join('');
  return `${start} … (${address.length} characters, sha256 ${createHash('sha256').update(address).digest('hex').slice(0, 12)})`;
}

/** RFC 5321: a path holds at most 256 octets, its angle brackets included. */
const MAX_ADDRESS = 254;

export function isValidEmail(address: string): boolean {
  // eslint-disable-next-line no-control-regex
  return address.length <= MAX_ADDRESS && EMAIL.test(address) && !/[\u0000-\u001f\u007f]/.test(address);
}

export function isCustomerFacing(step: Step): boolean {
  return step.to.kind !== 'owner';
}

/** The recipients of `step`; an empty list means there is nobody to send to (`no_contact`). */
export function resolveRecipients(snapshot: DecisionSnapshot, step: Step, defaults: JourneyDefaults): Recipient[] {
  const { opportunity } = snapshot;
  switch (step.to.kind) {
    case 'owner': {
      if (!opportunity.ownerEmail?.trim()) return [];
      return [{ address: normalizeEmail(opportunity.ownerEmail), contact: null, audience: 'owner',
        timeZone: defaults.timeZone, unknownZone: null, locale: 'en' }];
    }
    case 'primary': {
      const contact = opportunity.primaryContactId === null ? undefined : snapshot.contacts.get(opportunity.primaryContactId);
      return contact ? [contactRecipient(contact, 'primary', defaults)] : [];
    }
    case 'role': {
      const role = step.to.role;
      return snapshot.roles
        .filter((r) => r.role === role)
        .map((r) => snapshot.contacts.get(r.contactId))
        .filter((c): c is Contact => c !== undefined)
        .sort((a, b) => a.id - b.id)
        .map((c) => contactRecipient(c, 'role', defaults));
    }
  }
}

function contactRecipient(contact: Contact, audience: Audience['kind'], defaults: JourneyDefaults): Recipient {
  const zone = contact.timeZone?.trim() || null;
  const known = zone !== null && isValidTimeZone(zone);
  return {
    address: normalizeEmail(contact.email),
    contact,
    audience,
    timeZone: known ? zone : defaults.timeZone,
    unknownZone: zone !== null && !known ? zone : null,
    locale: contact.locale || 'en',
  };
}
