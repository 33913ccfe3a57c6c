/**
 * Bench data, written by PostgreSQL itself (`insert … select … from generate_series`), seeded so
 * that two runs hold the same rows. The spread aims at a CRM's pipeline as `now` sees it:
 *
 * - closing dates over ±120 days around `now`, denser near it (|offset| = 120·u^1.5), 3 % blank;
 * - stages across the default pipeline, mostly open (85 %);
 * - amounts 200–50,200 in EUR (85 %), USD, GBP, JPY; 15 % blank;
 * - 0.8 contacts per opportunity: a contact is picked at random, so some have several
 *   opportunities and some none; 3 % of opportunities have none; 20 % of contacts have no time
 *   zone, 0.5 % an unknown one; locales en, de, fr, en-US, nl; a few without or with a bad address,
 *   unsubscribed or bounced;
 * - 15 % of opportunities have a second contact with a role, 25 % an activity;
 * - the decision log a daemon that ran until yesterday would hold: every step due before today
 *   decided (sent, or suppressed for its recipient), so a tick at `now` decides today's steps.
 *
 * With the shipped journey, about 2–3 % of opportunities have a step to decide at `now`.
 */
import pg from 'pg';
import type { Journey } from '../../src/journey/types.ts';

export interface GeneratedCounts {
  contacts: number;
  opportunities: number;
  roles: number;
  activities: number;
  history: number;
  seconds: number;
}

export async function generate(url: string, opportunities: number, now: Date, journey: Journey): Promise<GeneratedCounts> {
  const started = performance.now();
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const nowIso = now.toISOString();
    const today = nowIso.slice(0, 10);
    const contacts = Math.max(1, Math.round(opportunities * 0.8));
    await client.query('select setseed(0.42)');
    await client.query(CONTACTS, [contacts, nowIso]);
    await client.query(OPPORTUNITIES, [opportunities, today, contacts, nowIso]);
    await client.query(ROLES, [contacts]);
    await client.query(ACTIVITIES, [nowIso]);
    await writeHistory(client, today, journey);
    await client.query('vacuum analyze');
    // The generated pages written out now, not by a checkpoint spread over the measures that
    // follow, whose writes would compete with the commits of the delivery and latency runs.
    await client.query('checkpoint');
    const count = async (table: string) => Number((await client.query(`select count(*)::int as n from ${table}`)).rows[0].n);
    return {
      contacts, opportunities, roles: await count('opportunity_contacts'), activities: await count('activities'),
      history: await count('deliveries'), seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await client.end();
  }
}

/** The decision log (see HISTORY below); exported so that a developer can rewrite it on a kept database. */
export async function writeHistory(client: pg.Client, today: string, journey: Journey): Promise<void> {
  await client.query(CLOSING_HISTORY, [today, historySteps(journey)]);
  await client.query(STAGE_HISTORY, [today, historySteps(journey)]);
}

const CONTACTS = `
insert into contacts (email, first_name, last_name, locale, time_zone, unsubscribed_at, bounced_at)
select
  case when r1 < 0.02 then null
       when r1 < 0.03 then 'not an address ' || g
       else 'contact' || g || '@' || (array['example.com', 'example.org', 'mail.example.net'])[1 + g % 3] end,
  (array['Alice', 'Bernd', 'Carla', 'Daichi', 'Eve', 'Gita', 'Hugo', 'Ines'])[1 + g % 8],
  (array['Martin', 'Schulz', 'Díaz', 'Sato', 'Dupont', 'Rao', 'Peeters', 'O''Brien'])[1 + (g / 8) % 8],
  case when r3 < 0.45 then 'en' when r3 < 0.65 then 'de' when r3 < 0.80 then 'fr' when r3 < 0.92 then 'en-US' else 'nl' end,
  case when r2 < 0.200 then null
       when r2 < 0.450 then 'Europe/Brussels' when r2 < 0.600 then 'Europe/Berlin' when r2 < 0.700 then 'Europe/Paris'
       when r2 < 0.780 then 'Europe/London' when r2 < 0.860 then 'America/New_York' when r2 < 0.920 then 'America/Los_Angeles'
       when r2 < 0.960 then 'Asia/Tokyo' when r2 < 0.995 then 'Australia/Sydney' else 'Mars/Olympus' end,
  case when r4 < 0.03 then $2::timestamptz - interval '30 days' end,
  case when r4 > 0.99 then $2::timestamptz - interval '10 days' end
from (select g, random() as r1, random() as r2, random() as r3, random() as r4 from generate_series(1, $1::int) as g) as s`;

const OPPORTUNITIES = `
insert into opportunities (title, amount, currency, closing_date, stage, primary_contact_id, owner_email, stage_entered_at)
select
  (array['Trip to the USA', 'Linguistic courses in Australia', 'Team offsite in Lisbon', 'Ski week in the Alps',
         'Wine tasting tour <Bordeaux> & "friends"', 'Safari in Kenya', 'Road trip in Iceland', 'Cooking class in Naples'])[1 + g % 8]
    || ' #' || g,
  case when ra < 0.15 then null else round((200 + rb * 50000)::numeric, 2) end,
  case when rc < 0.85 then 'EUR' when rc < 0.95 then 'USD' when rc < 0.98 then 'GBP' else 'JPY' end,
  case when rd < 0.03 then null
       else $2::date + (case when re < 0.5 then -1 else 1 end) * round(120 * power(rf, 1.5))::int end,
  case when rs < 0.30 then 'qualification' when rs < 0.55 then 'needs_analysis' when rs < 0.75 then 'proposal'
       when rs < 0.85 then 'negotiation' when rs < 0.93 then 'won' else 'lost' end,
  case when rp < 0.03 then null else 1 + floor(rq * $3::int)::bigint end,
  case when ro < 0.10 then null else 'owner' || (1 + floor(ro * 50))::int || '@acme.example' end,
  $4::timestamptz - rt * interval '60 days'
from (select g, random() as ra, random() as rb, random() as rc, random() as rd, random() as re, random() as rf,
             random() as rs, random() as rp, random() as rq, random() as ro, random() as rt
      from generate_series(1, $1::int) as g) as s`;

const ROLES = `
insert into opportunity_contacts (opportunity_id, contact_id, role)
select id, 1 + floor(random() * $1::int)::bigint, case when random() < 0.7 then 'decision-maker' else 'assistant' end
from opportunities where random() < 0.15`;

const ACTIVITIES = `
insert into activities (opportunity_id, kind, subject, due_at, done_at)
select id, (array['call', 'task', 'note'])[1 + floor(random() * 3)::int], 'Follow-up',
       $1::timestamptz + (random() * 20 - 10) * interval '1 day',
       case when random() < 0.5 then $1::timestamptz - random() * interval '10 days' end
from opportunities where random() < 0.25`;

// HISTORY. What a daemon that ran until yesterday would have decided: every step of the journey whose due
// day is past, for opportunities closing within 30 days of today (or that entered the stage within
// 30 days): sent to a plausible address, else suppressed with the recipient's reason. So a tick
// at \`now\` decides today's steps only, as in a running installation.
const HISTORY_COLUMNS = `opportunity_id, step_id, contact_id, recipient, status, reason, due_at, decided_at, message_id,
  closing_date, occurrence, transport`;

const HISTORY_VALUES = `
select id, step_id, case when owner then null else contact_id end, recipient,
       case when reason is null then 'sent' else 'suppressed' end, reason,
       day + time '08:00', day + time '08:01',
       case when reason is null then '<bench.' || id || '.' || step_id || '@acme.example>' end,
       closing_date, '', case when reason is null then 'smtp' end
from (select due.*,
        case when owner then coalesce(lower(trim(owner_email)), '') else coalesce(lower(trim(email)), '') end as recipient,
        case when owner then case when owner_email is null then 'no_contact' end
             when contact_id is null then 'no_contact'
             when email is null or email !~ '^[^[:space:]@]+@[^[:space:]@]+[.][^[:space:]@]+$' then 'invalid_email'
             when unsubscribed_at is not null then 'unsubscribed'
             when bounced_at is not null then 'bounced' end as reason
      from due) as d`;

const STEPS = `select * from jsonb_to_recordset($2::jsonb)
  as x(step_id text, offset_days int, stage text, stages text[], owner boolean, min_probability int, min_amount numeric)`;

const ELIGIBLE = `join stages s on s.key = o.stage and s.outcome = 'open'
  join st on (st.stages is null or o.stage = any (st.stages)) and s.probability >= coalesce(st.min_probability, 0)
         and (st.min_amount is null or o.amount >= st.min_amount)
  left join contacts c on c.id = o.primary_contact_id`;

const DUE_COLUMNS = 'o.id, o.closing_date, st.step_id, st.owner, o.owner_email, c.id as contact_id, c.email, c.unsubscribed_at, c.bounced_at';

const CLOSING_HISTORY = `
with st as (${STEPS} where stage is null),
due as (select ${DUE_COLUMNS}, o.closing_date + st.offset_days as day from opportunities o ${ELIGIBLE}
        where o.closing_date between $1::date - 30 and $1::date + 30 and o.closing_date + st.offset_days < $1::date)
insert into deliveries (${HISTORY_COLUMNS}) ${HISTORY_VALUES}`;

const STAGE_HISTORY = `
with st as (${STEPS} where stage is not null),
due as (select ${DUE_COLUMNS}, (o.stage_entered_at at time zone 'UTC')::date + st.offset_days as day from opportunities o ${ELIGIBLE}
        where o.stage = st.stage and o.stage_entered_at > $1::date - 30
          and (o.stage_entered_at at time zone 'UTC')::date + st.offset_days < $1::date)
insert into deliveries (${HISTORY_COLUMNS}) ${HISTORY_VALUES}`;

/** The journey's steps as the history queries read them (role steps are left out). */
function historySteps(journey: Journey): string {
  return JSON.stringify(journey.steps.filter((step) => step.to.kind !== 'role').map((step) => ({
    step_id: step.id,
    offset_days: step.trigger.kind === 'closingDate' ? step.trigger.offsetDays : step.trigger.daysAfter,
    stage: step.trigger.kind === 'stageEntered' ? step.trigger.stage : null,
    stages: step.stages, owner: step.to.kind === 'owner', min_probability: step.minProbability, min_amount: step.minAmount,
  })));
}
