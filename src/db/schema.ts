/**
 * The tables of SPEC section 2 as kysely sees them. Column types are what `pg` returns with the
 * type parsers set in `database.ts`: `bigint` ids as numbers, `date` as a `YYYY-MM-DD` string,
 * `numeric` as an exact decimal string, `timestamptz` as a `Date`.
 */
import type { ColumnType, Generated } from 'kysely';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;

export interface StagesTable {
  key: string;
  label: string;
  probability: number;
  outcome: 'open' | 'won' | 'lost';
  position: Generated<number>;
}

export interface ContactsTable {
  id: Generated<number>;
  email: string | null;
  first_name: string | null;
  last_name: string | null;
  locale: Generated<string>;
  time_zone: string | null;
  unsubscribed_at: Date | null;
  bounced_at: Date | null;
  created_at: Timestamp;
}

export interface OpportunitiesTable {
  id: Generated<number>;
  title: string;
  amount: ColumnType<string | null, string | number | null | undefined, string | number | null>;
  currency: Generated<string>;
  closing_date: string | null;
  stage: string;
  primary_contact_id: number | null;
  owner_email: string | null;
  stage_entered_at: Timestamp;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface OpportunityContactsTable {
  opportunity_id: number;
  contact_id: number;
  role: string;
}

export interface ActivitiesTable {
  id: Generated<number>;
  opportunity_id: number;
  kind: 'call' | 'task' | 'note';
  subject: string | null;
  due_at: Date | null;
  done_at: Date | null;
  created_at: Timestamp;
}

export interface DeliveriesTable {
  id: Generated<number>;
  opportunity_id: number;
  step_id: string;
  contact_id: number | null;
  recipient: Generated<string>;
  status: 'sent' | 'suppressed' | 'failed' | 'unknown';
  reason: string | null;
  due_at: Date | null;
  decided_at: Date;
  message_id: string | null;
  closing_date: string | null;
  occurrence: Generated<string>;
  /** The template file used (sent, failed). */
  template: string | null;
  /** `smtp` or `outbox`. */
  transport: string | null;
  /** Human detail: the SMTP server's text, the template error, the rule's values. */
  detail: string | null;
  /** When a send was claimed (real clock), and when its message started to go to SMTP. */
  claimed_at: Date | null;
  handed_at: Date | null;
}

export interface Database {
  stages: StagesTable;
  contacts: ContactsTable;
  opportunities: OpportunitiesTable;
  opportunity_contacts: OpportunityContactsTable;
  activities: ActivitiesTable;
  deliveries: DeliveriesTable;
}
