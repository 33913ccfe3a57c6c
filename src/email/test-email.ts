/**
 * `nudge send-test`: one email exactly as a step would send it (same context, layout, CSS
 * inlining and headers, through `composeEmail`), but to an address the marketer chooses, with
 * `[TEST] ` before the subject and an `X-Nudge-Test` header. It is recorded nowhere.
 *
 * Two things differ from a journey email on purpose:
 * - the Message-ID is unique per test (derived from a random occurrence): mail programs hide a
 *   second message with a Message-ID they have seen, so a re-sent test would not show up;
 * - the unsubscribe link and `List-Unsubscribe` are signed for contact id 0, which no contact
 *   has: a tester who clicks it, or whose mail program offers one-click unsubscribe, must not
 *   unsubscribe the real customer whose data filled the email.
 */
import { randomUUID } from 'node:crypto';
import type { Recipient } from '../journey/recipients.ts';
import { isValidTimeZone } from '../journey/time.ts';
import type { Contact, JourneyDefaults, Snapshot, Step } from '../journey/types.ts';
import { composeEmail, templateContext, type ComposeSettings } from './compose.ts';
import type { OutgoingEmail } from './mailer.ts';
import type { RenderedEmail, Templates } from './templates.ts';

export const TEST_SUBJECT_PREFIX = '[TEST] ';

/** The step id in `X-Nudge-Step` when no step of the journey uses the template. */
export const TEST_STEP_ID = 'send-test';

export interface TestEmailInput {
  template: string;
  /** Where the test goes: a valid, normalised address. */
  to: string;
  /** The real opportunity with its contacts; null: the sample "Trip to the USA". */
  snapshot: Snapshot | null;
  /** The first journey step that uses the template, if any: its id and audience are used. */
  step: Step | null;
  /** The journey's defaults (time zone of contacts without one); null when it did not load. */
  defaults: JourneyDefaults | null;
  /** Overrides the recipient's locale (picks the variant, formats dates and money). */
  locale: string | null;
  now: Date;
}

export interface TestEmail {
  email: OutgoingEmail;
  rendered: RenderedEmail;
  locale: string;
  timeZone: string;
  /** Things the marketer should know about the data used (e.g. no primary contact). */
  notes: string[];
}

/** Renders and composes; throws TemplateError when the template cannot render. */
export function prepareTestEmail(templates: Templates, input: TestEmailInput, settings: ComposeSettings): TestEmail {
  const notes: string[] = [];
  const snapshot = input.snapshot ?? sampleSnapshot(input.now, input.to);
  const owner = input.step?.to.kind === 'owner';
  let contact: Contact | null = null;
  if (!owner) {
    contact = realContact(snapshot, input);
    if (!contact) {
      notes.push(`opportunity ${snapshot.opportunity.id} has no ${input.step?.to.kind === 'role' ? 'contact with that role' : 'primary contact'}: the sample contact fills the email`);
      contact = sampleContact(input.to);
    }
  }
  const zone = contact?.timeZone?.trim();
  const timeZone = zone && isValidTimeZone(zone) ? zone : input.defaults?.timeZone ?? 'UTC';
  const locale = input.locale ?? contact?.locale ?? 'en';
  const recipient: Recipient = {
    address: input.to, contact: contact && { ...contact, id: SAMPLE_ID }, audience: owner ? 'owner' : input.step?.to.kind ?? 'primary',
    timeZone, unknownZone: null, locale,
  };
  const rendered = templates.render(input.template, templateContext(snapshot, recipient, settings), { locale, timeZone });
  const email = composeEmail(
    { ...rendered, subject: `${TEST_SUBJECT_PREFIX}${rendered.subject}` }, snapshot, { id: input.step?.id ?? TEST_STEP_ID },
    recipient, `test-${randomUUID()}`, settings,
  );
  email.headers['X-Nudge-Test'] = 'yes';
  return { email, rendered, locale, timeZone, notes };
}

function realContact(snapshot: Snapshot, input: TestEmailInput): Contact | null {
  if (!input.snapshot) return sampleContact(input.to);
  if (input.step?.to.kind === 'role') {
    const role = input.step.to.role;
    const ids = snapshot.roles.filter((r) => r.role === role).map((r) => r.contactId).sort((a, b) => a - b);
    return ids.map((id) => snapshot.contacts.get(id)).find((c) => c !== undefined) ?? null;
  }
  const id = snapshot.opportunity.primaryContactId;
  return id === null ? null : snapshot.contacts.get(id) ?? null;
}

/**
 * The id of the sample opportunity and contact, here and in the preview: no row has it (ids start
 * at 1), so a sample's unsubscribe link, signed for it, unsubscribes nobody when clicked.
 */
export const SAMPLE_ID = 0;

/** The sample opportunity: "Trip to the USA", 12,000 EUR, proposal, closing in 14 days. */
export function sampleSnapshot(now: Date, to: string): Snapshot {
  const closing = new Date(now.getTime() + 14 * 86_400_000).toISOString().slice(0, 10);
  return {
    opportunity: {
      id: SAMPLE_ID, title: 'Trip to the USA', amount: '12000.00', currency: 'EUR', closingDate: closing,
      stage: { key: 'proposal', label: 'Proposal', probability: 50, outcome: 'open', position: 3 },
      primaryContactId: SAMPLE_ID, ownerEmail: 'sales@example.com', stageEnteredAt: now, createdAt: now, updatedAt: now,
    },
    contacts: new Map([[SAMPLE_ID, sampleContact(to)]]), roles: [], activities: [], history: [], sentToContact: new Map(),
  };
}

function sampleContact(to: string): Contact {
  return { id: SAMPLE_ID, email: to, firstName: 'Alex', lastName: 'Sample', locale: 'en', timeZone: null, unsubscribedAt: null, bouncedAt: null };
}
