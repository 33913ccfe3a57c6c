/**
 * One email as the worker would build it: the step's recipient, their locale (or the one the
 * marketer picked), the real template context, the real render and the real headers from
 * `composeEmail`. Nothing is sent. A template that cannot render is a problem to show, not a throw.
 */
import { composeEmail, templateContext, type ComposeSettings } from '../email/compose.ts';
import type { OutgoingEmail } from '../email/mailer.ts';
import { formatProblem, TemplateError, type RenderedEmail, type Templates } from '../email/templates.ts';
import { SAMPLE_ID } from '../email/test-email.ts';
import { isValidEmail, resolveRecipients, type Recipient } from '../journey/recipients.ts';
import { closingDatePassed, stageFilter } from '../journey/rules.ts';
import type { Journey, JourneyDefaults, Snapshot, Step } from '../journey/types.ts';

/** What the page asks for; every field may be missing or name something that no longer exists. */
export interface EmailChoice {
  stepId?: string | undefined;
  template?: string | undefined;
  /** A locale tag overriding the recipient's, e.g. `de`. */
  locale?: string | undefined;
}

export interface Selection {
  template: string;
  step: Step;
  /** False when no step of the journey uses the template: `step` is a stand-in named `preview`. */
  fromJourney: boolean;
}

export interface EmailPreview {
  selection: Selection;
  recipient: Recipient;
  /** The locale rendered in. */
  locale: string;
  /** Things the marketer should know about this preview (a stand-in recipient, an unused template). */
  notes: string[];
  result: { rendered: RenderedEmail; email: OutgoingEmail } | { problem: string };
}

/** The step asked for, else the first step using the template asked for, else the first step. */
export function selectEmail(templates: Templates, journey: Journey | null, choice: EmailChoice): Selection | null {
  const steps = journey?.steps ?? [];
  const byId = steps.find((s) => s.id === choice.stepId);
  if (byId) return { template: byId.template, step: byId, fromJourney: true };
  const names = templates.names();
  const template = choice.template && names.includes(choice.template) ? choice.template : steps[0]?.template ?? names[0];
  if (template === undefined) return null;
  const user = steps.find((s) => s.template === template);
  return user ? { template, step: user, fromJourney: true } : { template, step: standInStep(template), fromJourney: false };
}

export function previewEmail(
  templates: Templates, journey: Journey | null, snapshot: Snapshot, selection: Selection,
  localeOverride: string | null, settings: ComposeSettings, now: Date,
): EmailPreview {
  const defaults: JourneyDefaults = journey?.defaults ?? { timeZone: 'UTC', frequencyCap: null };
  const { step } = selection;
  const notes: string[] = [];
  if (!selection.fromJourney) {
    notes.push(`${journey ? 'No step of journeys.yaml uses this template' : 'journeys.yaml has a problem'}: X-Nudge-Step shows "preview".`);
  }
  notes.push(...opportunityNotes(snapshot, selection));
  const recipients = resolveRecipients(snapshot, step, defaults);
  let recipient = recipients[0];
  if (!recipient) {
    recipient = standInRecipient(step, defaults);
    notes.push(`This opportunity has nobody to send step "${step.id}" to (it would be suppressed as no_contact): shown with a stand-in recipient.`);
  } else {
    if (recipients.length > 1) notes.push(`Step "${step.id}" goes to ${recipients.length} people here; shown for the first, each gets it in their own locale.`);
    for (const r of recipients) notes.push(...recipientNotes(r, recipients.length > 1, defaults));
  }
  notes.push(...closingDateNotes(snapshot, step, recipient, now));
  const locale = localeOverride ?? recipient.locale;
  const ctx = templateContext(snapshot, recipient, settings);
  if (ctx.contact) ctx.contact = { ...ctx.contact, locale };
  const base = { selection, recipient, locale, notes };
  try {
    const rendered = templates.render(selection.template, ctx, { locale, timeZone: recipient.timeZone });
    // As sent: the base file's words with the recipient's formats, a mix a marketer should see named.
    // English is taken for the base files' language, as the shipped ones are.
    if (rendered.file === `${selection.template}.hbs` && !/^en\b/i.test(locale)) {
      const language = locale.split(/[-_]/)[0]!;
      const files = [...new Set([`${selection.template}.${locale}.hbs`, `${selection.template}.${language}.hbs`])].join(' nor ');
      notes.push(`There is no ${files}: the email has the base file's text, with dates and amounts formatted for ${locale}.`);
    }
    const occurrence = step.repeat === 'onNewClosingDate' ? snapshot.opportunity.closingDate ?? '' : '';
    return { ...base, result: { rendered, email: composeEmail(rendered, snapshot, step, recipient, occurrence, settings) } };
  } catch (error) {
    if (!(error instanceof TemplateError)) throw error;
    return { ...base, result: { problem: formatProblem(error.problem) } };
  }
}

/**
 * What would keep this email from going out whenever it fell due, said beside it: facts about the
 * opportunity and the recipients, not about timing (explain tells when a step falls due and what
 * it decides then). The rules are those of `src/journey/rules.ts`, in its order.
 */
function opportunityNotes(snapshot: Snapshot, selection: Selection): string[] {
  const outcome = snapshot.opportunity.stage.outcome;
  if (outcome !== 'open') return [`The opportunity is ${outcome}: no step goes out (not eligible; opportunity_closed at send time).`];
  const filtered = selection.fromJourney ? stageFilter(snapshot, selection.step) : null;
  return filtered ? [`Step "${selection.step.id}" does not apply to this opportunity: ${filtered} (not eligible; stage_not_eligible at send time).`] : [];
}

/** A stale opportunity, the usual state of one whose date nobody moved: its customer steps wait for a new date. */
function closingDateNotes(snapshot: Snapshot, step: Step, recipient: Recipient, now: Date): string[] {
  const { closingDate, stage } = snapshot.opportunity;
  if (stage.outcome !== 'open' || !closingDatePassed(closingDate, step, recipient.timeZone, now)) return [];
  return [`The closing date ${closingDate} has passed: a step to the customer is not sent until the date is moved later (suppressed as closing_date_passed).`];
}

function recipientNotes(recipient: Recipient, several: boolean, defaults: JourneyDefaults): string[] {
  const who = several ? `The recipient ${recipient.address || `#${recipient.contact?.id}`}` : 'The recipient';
  const notes: string[] = [];
  if (!recipient.address) notes.push(`${who} has no email address (it would be suppressed as invalid_email).`);
  else if (!isValidEmail(recipient.address)) notes.push(`${who}'s address is not valid (it would be suppressed as invalid_email).`);
  if (recipient.contact?.unsubscribedAt) notes.push(`${who} has unsubscribed (it would be suppressed as unsubscribed).`);
  if (recipient.contact?.bouncedAt) notes.push(`${who}'s address has bounced (it would be suppressed as bounced).`);
  if (recipient.unknownZone !== null) notes.push(`${who}'s time zone "${recipient.unknownZone}" is unknown: times are those of ${defaults.timeZone}.`);
  return notes;
}

function standInStep(template: string): Step {
  return {
    id: 'preview', template, trigger: { kind: 'closingDate', offsetDays: 0 }, to: { kind: 'primary' },
    stages: null, minProbability: null, minAmount: null, skipIfRecentActivityMinutes: null, repeat: 'never',
    timing: { sendAt: { hour: 9, minute: 0 }, windowMinutes: 1440, quietHours: null, skipWeekends: false }, line: 0,
  };
}

function standInRecipient(step: Step, defaults: JourneyDefaults): Recipient {
  const base = { timeZone: defaults.timeZone, unknownZone: null, locale: 'en' };
  if (step.to.kind === 'owner') return { ...base, address: 'owner@example.com', contact: null, audience: 'owner' };
  // The sample's id, like send-test's: its unsubscribe link, copied from the preview, unsubscribes nobody.
  const contact = {
    id: SAMPLE_ID, email: 'alex.sample@example.com', firstName: 'Alex', lastName: 'Sample', locale: 'en',
    timeZone: null, unsubscribedAt: null, bouncedAt: null,
  };
  return { ...base, address: contact.email, contact, audience: step.to.kind };
}
