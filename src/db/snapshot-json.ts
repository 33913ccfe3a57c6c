/**
 * The JSON both snapshot readers have PostgreSQL build (the worker's locked one and the scan's
 * batch): one value per kind of row instead of a row per record, decoded by `JSON.parse`. Inside,
 * bigint ids are text (parsed like every other id) and instants are milliseconds since the epoch.
 */
import { boundedInstant, parseInt8 } from './database.ts';
import type { Activity, ActivityKind, Contact, DeliveryStatus, PastDecision, Reason } from '../journey/types.ts';

/** Milliseconds since the epoch, as JSON: a JavaScript Date's precision (truncated like pg's own parser). */
export const ms = (column: string) => `floor(extract(epoch from ${column}) * 1000)`;

/** `infinity` comes as the string "Infinity": bounded, as every instant read (`boundedInstant`). */
export type MsJson = number | 'Infinity' | '-Infinity';

export function instantFromJson(value: MsJson): Date {
  return boundedInstant(typeof value === 'number' ? value : value === 'Infinity' ? Infinity : -Infinity);
}

/** `instantFromJson` of a column that may be null. */
const instantOrNull = (value: MsJson | null): Date | null => (value === null ? null : instantFromJson(value));

/** `contactJson('c')`: the columns of `ContactJson`, for `json_build_array`. */
export const contactJson = (c: string) => `${c}.id::text, ${c}.email, ${c}.first_name, ${c}.last_name, ${c}.locale, ${c}.time_zone,
     ${ms(`${c}.unsubscribed_at`)}, ${ms(`${c}.bounced_at`)}`;

export type ContactJson = [id: string, email: string | null, firstName: string | null, lastName: string | null,
  locale: string, timeZone: string | null, unsubscribedAt: MsJson | null, bouncedAt: MsJson | null];

export function contactFromJson([id, email, firstName, lastName, locale, timeZone, unsubscribedAt, bouncedAt]: ContactJson): Contact {
  return {
    id: parseInt8(id), email, firstName, lastName, locale, timeZone,
    unsubscribedAt: instantOrNull(unsubscribedAt), bouncedAt: instantOrNull(bouncedAt),
  };
}

/** `decisionJson('d')`: the columns of `DecisionJson`. */
export const decisionJson = (d: string) => `${d}.step_id, ${d}.occurrence, ${d}.recipient, ${d}.contact_id::text, ${d}.status, ${d}.reason,
     ${d}.closing_date, ${ms(`${d}.decided_at`)}`;

export type DecisionJson = [stepId: string, occurrence: string, recipient: string, contactId: string | null, status: DeliveryStatus,
  reason: string | null, closingDate: string | null, decidedAt: MsJson];

export function decisionFromJson([stepId, occurrence, recipient, contactId, status, reason, closingDate, decidedAt]: DecisionJson): PastDecision {
  return {
    stepId, occurrence, recipient, contactId: contactId === null ? null : parseInt8(contactId), status,
    reason: reason as Reason | null, closingDate, decidedAt: instantFromJson(decidedAt),
  };
}

/** `activityJson('a')`: the columns of `ActivityJson`. */
export const activityJson = (a: string) => `${a}.id::text, ${a}.kind, ${ms(`${a}.due_at`)}, ${ms(`${a}.done_at`)}`;

export type ActivityJson = [id: string, kind: ActivityKind, dueAt: MsJson | null, doneAt: MsJson | null];

export function activityFromJson([id, kind, dueAt, doneAt]: ActivityJson): Activity {
  return { id: parseInt8(id), kind, dueAt: instantOrNull(dueAt), doneAt: instantOrNull(doneAt) };
}

/** Sends to a contact: [contact id, when]. */
export type SentJson = [contactId: string, decidedAt: MsJson];
