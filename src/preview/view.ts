/**
 * Everything one page shows, gathered for one request: the content, the opportunity (real, or the
 * built-in sample when the database is not configured, not reachable or empty), the email, and
 * the calendar and forecast. The database is asked at each request, so starting PostgreSQL while
 * the preview runs is noticed at the next reload.
 */
import type { Clock } from '../clock.ts';
import { bigintId, type Db } from '../db/database.ts';
import { listStages } from '../db/opportunities.ts';
import type { ComposeSettings } from '../email/compose.ts';
import type { Forecast } from '../forecast.ts';
import type { Journey, Snapshot } from '../journey/types.ts';
import type { Logger } from '../logger.ts';
import type { Simulation } from '../simulate.ts';
import { localeVariants, type PreviewContent } from './content.ts';
import { calendar, firstOpportunityId, forecast, opportunitySnapshot, sampleSnapshot, searchOpportunities, type OpportunityChoice, type OpportunitySearch } from './data.ts';
import { previewEmail, selectEmail, type EmailPreview, type Selection } from './email.ts';
import type { ContentWatch } from './watch.ts';

export interface PreviewDeps {
  content: ContentWatch;
  /** Null when DATABASE_URL is not set: the sample opportunity only. */
  db: Db | null;
  settings: ComposeSettings;
  clock: Clock;
  logger: Logger;
}

/** The page's state, all of it in the query string (so a reload or a shared link shows the same). */
export interface ViewQuery {
  step?: string | undefined;
  template?: string | undefined;
  /** An opportunity id, or `sample`. */
  opportunity?: string | undefined;
  locale?: string | undefined;
  /** Search text for the opportunity picker. */
  q?: string | undefined;
}

export type DatabaseState = 'connected' | 'not-configured' | 'unreachable';

/** Data that could not be shown, with why (a problem in journeys.yaml, no database). */
export type Section<T> = { value: T } | { missing: string };

export interface View {
  query: ViewQuery;
  content: PreviewContent;
  database: DatabaseState;
  choices: OpportunityChoice[];
  /** More opportunities match the search than `choices` lists. */
  moreChoices: boolean;
  snapshot: Snapshot;
  sample: boolean;
  notes: string[];
  email: EmailPreview | null;
  /** Locale tags with a variant file of the selected template. */
  locales: string[];
  calendar: Section<Simulation>;
  forecast: Section<Forecast>;
}

/** Builds views; the calendar and forecast are kept for `cacheMs` per content version. */
export function viewBuilder(deps: PreviewDeps, cacheMs = 30_000): (query: ViewQuery) => Promise<View> {
  const cache = new Map<string, { at: number; value: Promise<Section<unknown>> }>();
  const cached = <T>(key: string, load: () => Promise<Section<T>>): Promise<Section<T>> => {
    const now = Date.now();
    const hit = cache.get(key);
    if (hit && now - hit.at < cacheMs) return hit.value as Promise<Section<T>>;
    for (const [k, v] of cache) if (now - v.at >= cacheMs) cache.delete(k);
    const value = load();
    cache.set(key, { at: now, value });
    return value;
  };
  let lastState: DatabaseState = 'connected';
  return async (query) => {
    const view = await buildView(deps, query, cached);
    // Said once when it changes, not at every request.
    if (view.database !== lastState && view.database === 'unreachable') deps.logger.warn('database not reachable; previewing with the sample opportunity');
    if (view.database !== lastState && view.database === 'connected') deps.logger.info('database reachable again');
    lastState = view.database;
    return view;
  };
}

type Cached = <T>(key: string, load: () => Promise<Section<T>>) => Promise<Section<T>>;

async function buildView(deps: PreviewDeps, query: ViewQuery, cached: Cached): Promise<View> {
  const content = deps.content.current();
  const now = deps.clock.now();
  const database = await databaseState(deps);
  const db = database === 'connected' ? deps.db : null;
  const search: OpportunitySearch | null = db ? await searchOpportunities(db, query.q ?? '').catch(() => null) : { choices: [], more: false };
  const choices = search?.choices ?? [];
  const picked = await pickOpportunity(db, searchedOpportunity(query, choices), now, deps.logger);
  if (search === null) picked.notes.push('The search could not be run: the database did not answer.');
  else if (query.q?.trim() && db && search.choices.length === 0) picked.notes.push(`No opportunity matches "${query.q.trim()}".`);
  const selection = selectEmail(content.templates, content.journey, { stepId: query.step, template: query.template });
  // The empty choice of the locale menu is "the recipient's".
  const email = selection && previewEmail(content.templates, content.journey, picked.snapshot, selection, query.locale || null, deps.settings, now);
  if (email) email.notes.unshift(...selectionNotes(query, email.selection, content.journey));
  const journey = content.journey;
  const missing = (what: string) => ({ missing: db === null ? `${what} needs a reachable database (DATABASE_URL).` : `${what} needs a valid journeys.yaml: see the problems above.` });
  return {
    query, content, database, choices, moreChoices: search?.more ?? false, snapshot: picked.snapshot, sample: picked.sample, notes: picked.notes, email,
    locales: selection ? localeVariants(content.templates.dir).get(selection.template) ?? [] : [],
    calendar: db && journey
      ? await cached(`calendar:${content.version}`, () => section(() => calendar(db, journey, now), 'calendar', deps.logger))
      : missing('The calendar'),
    forecast: db && journey
      ? await cached(`forecast:${content.version}`, () => section(() => forecast(db, journey.defaults.timeZone, now), 'forecast', deps.logger))
      : missing('The forecast'),
  };
}

/**
 * The opportunity to show: the one asked for, unless a search does not match it, in which case its
 * first match (searching picks; a match clicked in the list keeps the search).
 */
function searchedOpportunity(query: ViewQuery, matches: OpportunityChoice[]): string | undefined {
  if (!query.q?.trim() || matches.length === 0 || query.opportunity === 'sample') return query.opportunity;
  if (query.opportunity && matches.some((m) => String(m.id) === query.opportunity)) return query.opportunity;
  return String(matches[0]!.id);
}

/** A link naming a step or template that is not there (renamed, removed) says so. */
function selectionNotes(query: ViewQuery, selection: Selection, journey: Journey | null): string[] {
  if (query.step && selection.step.id !== query.step) {
    const why = journey ? `journeys.yaml has no step "${query.step}"` : `journeys.yaml has a problem, so step "${query.step}" cannot be shown`;
    return [`${why}: showing ${selection.fromJourney ? `step "${selection.step.id}"` : `template "${selection.template}"`}.`];
  }
  if (!query.step && query.template && selection.template !== query.template) return [`There is no template "${query.template}": showing "${selection.template}".`];
  return [];
}

async function databaseState(deps: PreviewDeps): Promise<DatabaseState> {
  if (!deps.db) return 'not-configured';
  try {
    await listStages(deps.db);
    return 'connected';
  } catch (error) {
    deps.logger.debug({ code: (error as { code?: string }).code }, 'database not reachable');
    return 'unreachable';
  }
}

interface Picked {
  snapshot: Snapshot;
  sample: boolean;
  notes: string[];
}

/** The opportunity asked for, else the first one, else the sample. */
async function pickOpportunity(db: Db | null, wanted: string | undefined, now: Date, logger: Logger): Promise<Picked> {
  const sample = (notes: string[]): Picked => ({ snapshot: sampleSnapshot(now), sample: true, notes });
  if (!db || wanted === 'sample') return sample([]);
  try {
    // Any bigint: one beyond 2^53 stays its exact text, as the search list read it (`bigintId`).
    const asked = wanted ? bigintId(wanted) : null;
    if (wanted && asked === null) return sample([`Opportunity #${wanted} does not exist: showing the sample opportunity.`]);
    const id = asked ?? await firstOpportunityId(db);
    if (id === null) return sample(['The database has no opportunities yet: showing the sample opportunity.']);
    const snapshot = await opportunitySnapshot(db, id);
    if (snapshot) return { snapshot, sample: false, notes: [] };
    return sample([`Opportunity #${id} does not exist: showing the sample opportunity.`]);
  } catch (error) {
    logger.warn({ code: (error as { code?: string }).code }, 'loading the opportunity failed');
    return sample(['The opportunity could not be loaded: showing the sample opportunity.']);
  }
}

async function section<T>(load: () => Promise<T>, what: string, logger: Logger): Promise<Section<T>> {
  try {
    return { value: await load() };
  } catch (error) {
    logger.warn({ code: (error as { code?: string }).code }, `${what} failed`);
    return { missing: `The ${what} could not be computed: ${(error as Error).message}` };
  }
}
