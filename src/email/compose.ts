/**
 * From a decision to an email: the template context, the headers and a Message-ID derived from
 * (opportunity, step, occurrence, recipient).
 */
import { createHash } from 'node:crypto';
import { expectedRevenue } from '../journey/money.ts';
import type { Recipient } from '../journey/recipients.ts';
import type { Snapshot, Step } from '../journey/types.ts';
import type { Secrets } from '../secrets.ts';
import { signUnsubscribeToken } from '../unsubscribe-token.ts';
import type { OutgoingEmail } from './mailer.ts';
import type { RenderedEmail, TemplateContext } from './templates.ts';

/** `secret` signs unsubscribe links (and seals what a delivery job keeps: src/seal.ts); the previous ones sign nothing. */
export interface ComposeSettings extends Secrets {
  mailFrom: string;
  publicUrl: string;
}

export function unsubscribeUrl(contactId: number, settings: ComposeSettings): string {
  return `${settings.publicUrl}/unsubscribe/${signUnsubscribeToken(contactId, settings.secret)}`;
}

export function templateContext(snapshot: Pick<Snapshot, 'opportunity'>, recipient: Recipient | null, settings: ComposeSettings): TemplateContext {
  const o = snapshot.opportunity;
  const contact = recipient?.contact ?? null;
  return {
    opportunity: {
      id: o.id, title: o.title, amount: o.amount, currency: o.currency, closingDate: o.closingDate,
      stage: { key: o.stage.key, label: o.stage.label, probability: o.stage.probability },
      expectedRevenue: o.amount === null ? null : expectedRevenue(o.amount, o.stage.probability),
    },
    contact: contact && { firstName: contact.firstName, lastName: contact.lastName, email: contact.email, locale: contact.locale },
    owner: { email: o.ownerEmail },
    reference: o.title,
    unsubscribeUrl: contact ? unsubscribeUrl(contact.id, settings) : null,
  };
}

export function messageId(opportunityId: number, stepId: string, occurrence: string, recipient: string, mailFrom: string): string {
  const hash = createHash('sha256').update(`${opportunityId}|${stepId}|${occurrence}|${recipient}`).digest('hex').slice(0, 32);
  const domain = /@([A-Za-z0-9.-]+)/.exec(mailFrom)?.[1] ?? 'nudge.invalid';
  return `<${hash}.${opportunityId}@${domain}>`;
}

export function composeEmail(
  rendered: RenderedEmail, snapshot: Pick<Snapshot, 'opportunity'>, step: Pick<Step, 'id'>, recipient: Recipient, occurrence: string, settings: ComposeSettings,
): OutgoingEmail {
  const id = snapshot.opportunity.id;
  const headers: Record<string, string> = { 'X-Nudge-Opportunity': String(id), 'X-Nudge-Step': step.id };
  if (recipient.contact) {
    headers['List-Unsubscribe'] = `<${unsubscribeUrl(recipient.contact.id, settings)}>`;
    headers['List-Unsubscribe-Post'] = 'List-Unsubscribe=One-Click';
  }
  return {
    from: settings.mailFrom, to: recipient.address, subject: rendered.subject, html: rendered.html, text: rendered.text,
    headers, messageId: messageId(id, step.id, occurrence, recipient.address, settings.mailFrom),
  };
}
