/**
 * `journeys.yaml` -> a validated `Journey` (SPEC section 3), or every problem in the file, each
 * at the line and column of the YAML node at fault. Pure, except `loadJourneysFile`, which reads
 * the file and nothing else.
 */
import { readFileSync } from 'node:fs';
import { LineCounter, isScalar, parseDocument } from 'yaml';
import type { Node } from 'yaml';
import type { Audience, FrequencyCap, Journey, JourneyDefaults, Outcome } from './types.ts';
import type { QuietHours, Repeat, Step, Timing, Trigger } from './types.ts';
import { describe, didYouMean, fields, isNull, join, lineOf, orList } from './yaml-nodes.ts';
import { duration, numberFrom, oneOf, readBoolean, readDecimal, readList } from './yaml-nodes.ts';
import { readMap, readString, readTime, readTimeZone, report, wholeNumber } from './yaml-nodes.ts';
import type { Entries, Reader } from './yaml-nodes.ts';

/** One problem in a journey file; `line` and `column` are 1-based. */
export interface JourneyProblem {
  file: string;
  line: number;
  column: number;
  message: string;
}

/** `templates/journeys.yaml:12:7: steps[2].trigger: unknown key ...` */
export function formatJourneyProblem(p: JourneyProblem): string {
  return `${p.file}:${p.line}:${p.column}: ${p.message}`;
}

/** Keys of the file format the engine does not implement yet; `toRole` is `to: { role }`. */
export type UnsupportedFeature =
  | 'quietHours'
  | 'skipWeekends'
  | 'frequencyCap'
  | 'skipIfRecentActivity'
  | 'repeat'
  | 'toRole';

/** What the file is checked against besides its own format. */
export interface JourneyRules {
  /** Stage keys that exist, with their outcome; null = don't check stages (no database at hand). */
  stages: ReadonlyArray<{ key: string; outcome: 'open' | 'won' | 'lost' }> | null;
  /** Whether a template named NAME exists (the file NAME.hbs); null = don't check. */
  templateExists: ((name: string) => boolean) | null;
  /** Keys the engine does not implement yet: using one is an error "<key> is not supported yet". */
  unsupported: ReadonlySet<UnsupportedFeature>;
}

/** `journey` is null whenever there is a problem. Problems are in file order. */
export interface JourneyResult {
  journey: Journey | null;
  problems: JourneyProblem[];
}

/** Reads the file at `path` and parses it; an unreadable file is one problem at line 1. */
export function loadJourneysFile(path: string, rules: JourneyRules): JourneyResult {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : (error as Error).message;
    const message = `cannot read the journey file: ${why} (it is NUDGE_JOURNEYS, else journeys.yaml in NUDGE_TEMPLATES_DIR)`;
    return { journey: null, problems: [{ file: path, line: 1, column: 1, message }] };
  }
  return parseJourneys(text, path, rules);
}

/** Parses the text of a journey file; `file` names it in the journey and in problems. */
export function parseJourneys(text: string, file: string, rules: JourneyRules): JourneyResult {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  const stages = rules.stages && new Map(rules.stages.map((s) => [s.key, s.outcome] as const));
  const r: Context = { doc, lines, problems: [], rules, stages };
  let journey: Journey | null = null;
  if (doc.errors.length > 0) {
    // The tree after a syntax error is a guess; checking it would add noise, not news. So are the
    // errors after the first, mostly: one missing brace made 29 of them.
    const [first] = doc.errors;
    const { line, col } = lines.linePos(Math.max(0, first!.pos[0]));
    const more = doc.errors.length - 1;
    const after = more ? ` (and ${more} more YAML error${more === 1 ? '' : 's'} after it, often caused by this one: fix it first)` : '';
    r.problems.push({ line, column: col, message: `invalid YAML: ${first!.message}${after}` });
  } else {
    journey = readJourney(r, doc.contents, file);
  }
  const problems = r.problems
    .map((p) => ({ file, ...p }))
    .sort((a, b) => a.line - b.line || a.column - b.column);
  if (!journey && problems.length === 0) throw new Error(`${file}: rejected without a problem`);
  return { journey: problems.length === 0 ? journey : null, problems };
}

interface Context extends Reader {
  readonly rules: JourneyRules;
  /** Outcome by stage key; null: stages are not checked. */
  readonly stages: ReadonlyMap<string, Outcome> | null;
}

const TOP_KEYS = ['defaults', 'steps'];
/** What a step may override of `defaults`. */
const TIMING_KEYS = ['sendAt', 'window', 'quietHours', 'skipWeekends'];
const DEFAULTS_KEYS = ['timeZone', ...TIMING_KEYS, 'frequencyCap'];
const STEP_KEYS = [
  ...['id', 'template', 'trigger', 'to', 'stages', 'minProbability', 'minAmount'],
  ...['skipIfRecentActivity', 'repeat', ...TIMING_KEYS],
];
/** Keys refused, wherever they appear, when their feature is in `rules.unsupported`. */
const FEATURE_KEYS = [
  'quietHours',
  'skipWeekends',
  'frequencyCap',
  'skipIfRecentActivity',
  'repeat',
] as const satisfies readonly UnsupportedFeature[];

const ID = /^[a-z0-9][a-z0-9_-]*$/;
const TEMPLATE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

const DEFAULT_TIMING: Timing = {
  sendAt: { hour: 9, minute: 0 },
  windowMinutes: 1440,
  quietHours: null,
  skipWeekends: false,
};
const DEFAULT_DEFAULTS: JourneyDefaults = { timeZone: 'UTC', frequencyCap: null };

/** Ten years: a trigger further away is a typing mistake. */
const MAX_DAYS = 3650;

function readJourney(r: Context, root: Node | null, file: string): Journey | null {
  if (isNull(root)) {
    report(r, root, '', 'the file is empty (expected "steps:" with at least one step)');
    return null;
  }
  const entries = readMap(r, root, '', TOP_KEYS);
  if (!entries) return null;
  const defaults = readDefaults(r, entries.get('defaults')?.value ?? null);
  const steps = fields(r, entries, root, '').required('steps', (_, node) =>
    readSteps(r, node, defaults?.timing ?? DEFAULT_TIMING),
  );
  if (!defaults || !steps) return null;
  return { file, defaults: defaults.journey, steps };
}

/** `defaults:`; its timing is the base that steps override. */
function readDefaults(
  r: Context,
  node: Node | null,
): { journey: JourneyDefaults; timing: Timing } | undefined {
  if (isNull(node)) return { journey: DEFAULT_DEFAULTS, timing: DEFAULT_TIMING };
  const entries = readMap(r, node, 'defaults', DEFAULTS_KEYS);
  if (!entries) return undefined;
  refuseUnsupported(r, entries, 'defaults');
  const f = fields(r, entries, node, 'defaults');
  const timeZone = f.optional('timeZone', 'UTC', readTimeZone);
  const frequencyCap = f.optional('frequencyCap', null, readFrequencyCap);
  const timing = readTiming(r, entries, node, 'defaults', DEFAULT_TIMING);
  if (timeZone === undefined || frequencyCap === undefined || !timing) return undefined;
  return { journey: { timeZone, frequencyCap }, timing };
}

function readSteps(r: Context, node: Node | null, base: Timing): Step[] | undefined {
  const items = readList(r, node, 'steps');
  if (!items) return undefined;
  if (items.length === 0) report(r, node, 'steps', 'expected at least one step');
  const firstLineOfId = new Map<string, number>();
  const steps = items.map((item, i) => readStep(r, item, `steps[${i}]`, base, firstLineOfId));
  return items.length > 0 && steps.every((s) => s !== undefined) ? steps : undefined;
}

function readStep(
  r: Context,
  node: Node | null,
  path: string,
  base: Timing,
  firstLineOfId: Map<string, number>,
): Step | undefined {
  const entries = readMap(r, node, path, STEP_KEYS);
  if (!entries || !node) return undefined;
  refuseUnsupported(r, entries, path);
  const f = fields(r, entries, node, path);
  const id = f.required('id', (_, n, p) => readId(r, n, p, firstLineOfId));
  const template = f.required('template', readTemplate);
  const to = f.optional<Audience>('to', { kind: 'primary' }, readAudience);
  const trigger = f.required('trigger', (_, n, p) => readTrigger(r, n, p, to));
  const stages = f.optional('stages', null, readStageList);
  const minProbability = f.optional('minProbability', null, numberFrom(0, 100));
  const minAmount = f.optional('minAmount', null, readDecimal);
  const skip = f.optional('skipIfRecentActivity', null, duration(0));
  const repeat = f.optional<Repeat>('repeat', 'never', oneOf(['never', 'onNewClosingDate']));
  const timing = readTiming(r, entries, node, path, base);
  if (id === undefined || template === undefined || to === undefined || trigger === undefined) {
    return undefined;
  }
  if (stages === undefined || minProbability === undefined || minAmount === undefined) {
    return undefined;
  }
  if (skip === undefined || repeat === undefined || !timing) return undefined;
  return {
    id, template, trigger, to, stages, minProbability, minAmount,
    skipIfRecentActivityMinutes: skip, repeat, timing, line: lineOf(r, node),
  };
}

/** Reports (and drops) every key whose feature the engine does not implement yet. */
function refuseUnsupported(r: Context, entries: Entries, path: string): void {
  for (const key of FEATURE_KEYS) {
    const entry = entries.get(key);
    if (entry && r.rules.unsupported.has(key)) {
      report(r, entry.key, path, `"${key}" is not supported yet`);
      entries.delete(key);
    }
  }
}

/** The timing keys of `defaults` or of a step, over `base`. */
function readTiming(
  r: Context,
  entries: Entries,
  node: Node,
  path: string,
  base: Timing,
): Timing | undefined {
  const f = fields(r, entries, node, path);
  const sendAt = f.optional('sendAt', base.sendAt, readTime);
  const windowMinutes = f.optional('window', base.windowMinutes, duration(1));
  const quietHours = f.optional('quietHours', base.quietHours, readQuietHours);
  const skipWeekends = f.optional('skipWeekends', base.skipWeekends, readBoolean);
  if (sendAt === undefined || windowMinutes === undefined) return undefined;
  if (quietHours === undefined || skipWeekends === undefined) return undefined;
  return { sendAt, windowMinutes, quietHours, skipWeekends };
}

/** `null` switches quiet hours off (a step overriding the default). */
function readQuietHours(r: Reader, node: Node | null, path: string): QuietHours | null | undefined {
  if (isNull(node)) return null;
  const entries = readMap(r, node, path, ['from', 'to']);
  if (!entries) return undefined;
  const f = fields(r, entries, node, path);
  const from = f.required('from', readTime);
  const to = f.required('to', readTime);
  if (!from || !to) return undefined;
  if (from.hour !== to.hour || from.minute !== to.minute) return { from, to };
  const at = entries.get('to')?.value ?? node;
  report(r, at, join(path, 'to'), 'expected a time other than "from"');
  return undefined;
}

function readFrequencyCap(
  r: Reader,
  node: Node | null,
  path: string,
): FrequencyCap | null | undefined {
  if (isNull(node)) return null;
  const entries = readMap(r, node, path, ['max', 'perDays']);
  if (!entries) return undefined;
  const f = fields(r, entries, node, path);
  const max = f.required('max', wholeNumber(1, 1000));
  const perDays = f.required('perDays', wholeNumber(1, 366));
  return max === undefined || perDays === undefined ? undefined : { max, perDays };
}

/** A step id, unique: a repeated one is reported at its second use. */
function readId(
  r: Reader,
  node: Node | null,
  path: string,
  firstLineOfId: Map<string, number>,
): string | undefined {
  const id = readString(r, node, path);
  if (id === undefined) return undefined;
  if (!ID.test(id)) {
    const expected = 'lowercase letters, digits, "-" and "_", starting with a letter or digit';
    report(r, node, path, `expected an id of ${expected}, found ${describe(node)}`);
    return undefined;
  }
  const first = firstLineOfId.get(id);
  if (first === undefined) {
    firstLineOfId.set(id, lineOf(r, node));
    return id;
  }
  report(r, node, path, `duplicate id "${id}" (first used at line ${first})`);
  return undefined;
}

function readTemplate(r: Context, node: Node | null, path: string): string | undefined {
  const name = readString(r, node, path);
  if (name === undefined) return undefined;
  if (!TEMPLATE_NAME.test(name)) {
    const expected = 'a template name of letters, digits, "-" and "_", without ".hbs"';
    report(r, node, path, `expected ${expected}, found ${describe(node)}`);
    return undefined;
  }
  if (!r.rules.templateExists || r.rules.templateExists(name)) return name;
  const why = `no file ${name}.hbs in the templates folder`;
  report(r, node, path, `template "${name}" not found (${why})`);
  return undefined;
}

/** `primary`, `owner` or `{ role: NAME }`. */
function readAudience(r: Context, node: Node | null, path: string): Audience | undefined {
  if (isScalar(node)) {
    const expected = 'expected primary, owner or { role: NAME }';
    const text = typeof node.value === 'string' ? node.value : '';
    if (text === 'primary' || text === 'owner') return { kind: text };
    const hint = didYouMean(text, ['primary', 'owner']);
    report(r, node, path, `${expected}, found ${describe(node)}${hint}`);
    return undefined;
  }
  const entries = readMap(r, node, path, ['role']);
  if (!entries || !node) return undefined;
  const role = entries.get('role');
  if (role && r.rules.unsupported.has('toRole')) {
    report(r, role.key, path, `"role" is not supported yet`);
    return undefined;
  }
  const name = fields(r, entries, node, path).required('role', readString);
  if (name === undefined) return undefined;
  if (name.trim() !== '') return { kind: 'role', role: name };
  report(r, role?.value ?? node, join(path, 'role'), 'expected a role name, found ""');
  return undefined;
}

/** `to` undefined (itself invalid, already reported): the audience is not checked. */
function readTrigger(
  r: Context,
  node: Node | null,
  path: string,
  to: Audience | undefined,
): Trigger | undefined {
  const entries = readMap(r, node, path, ['closingDate', 'stageEntered']);
  if (!entries) return undefined;
  const [first, second] = entries;
  if (!first) {
    // An unknown key has already said what was expected.
    if (entries.unknown === 0) report(r, node, path, 'expected closingDate or stageEntered');
    return undefined;
  }
  if (second) {
    report(r, second[1].key, path, 'expected exactly one of closingDate or stageEntered');
    return undefined;
  }
  const [kind, { value }] = first;
  return kind === 'closingDate'
    ? readClosingDate(r, value, join(path, kind), to)
    : readStageEntered(r, value, join(path, kind));
}

function readClosingDate(
  r: Context,
  node: Node | null,
  path: string,
  to: Audience | undefined,
): Trigger | undefined {
  const entries = readMap(r, node, path, ['daysBefore', 'daysAfter']);
  if (!entries) return undefined;
  const before = entries.get('daysBefore');
  const after = entries.get('daysAfter');
  if (before && after) {
    report(r, after.key, path, 'expected daysBefore or daysAfter, not both');
    return undefined;
  }
  if (before) {
    const days = wholeNumber(0, MAX_DAYS)(r, before.value, join(path, 'daysBefore'));
    // `|| 0`: daysBefore 0 would give -0, which prints as 0 but is not `Object.is` 0.
    return days === undefined ? undefined : { kind: 'closingDate', offsetDays: -days || 0 };
  }
  if (!after) {
    if (entries.unknown === 0) report(r, node, path, 'expected daysBefore or daysAfter');
    return undefined;
  }
  const days = wholeNumber(0, MAX_DAYS)(r, after.value, join(path, 'daysAfter'));
  if (to && to.kind !== 'owner') {
    const hint = 'add "to: owner", or use daysBefore: 0 for the closing day itself';
    report(r, after.key, path, `only owner steps may fire after the closing date (${hint})`);
    return undefined;
  }
  return days === undefined ? undefined : { kind: 'closingDate', offsetDays: days };
}

function readStageEntered(r: Context, node: Node | null, path: string): Trigger | undefined {
  const entries = readMap(r, node, path, ['stage', 'daysAfter']);
  if (!entries || !node) return undefined;
  const f = fields(r, entries, node, path);
  const stage = f.required('stage', readStageKey);
  const daysAfter = f.optional('daysAfter', 0, wholeNumber(0, MAX_DAYS));
  if (stage === undefined || daysAfter === undefined) return undefined;
  return { kind: 'stageEntered', stage, daysAfter };
}

function readStageList(r: Context, node: Node | null, path: string): string[] | undefined {
  const items = readList(r, node, path);
  if (!items) return undefined;
  if (items.length === 0) {
    report(r, node, path, 'expected at least one stage (leave "stages" out for every open stage)');
    return undefined;
  }
  const keys = items.map((item, i) => readStageKey(r, item, `${path}[${i}]`));
  return keys.every((k) => k !== undefined) ? keys : undefined;
}

/** A stage key that exists and is open (checked only when `rules.stages` is given). */
function readStageKey(r: Context, node: Node | null, path: string): string | undefined {
  const key = readString(r, node, path);
  if (key === undefined || r.stages === null) return key;
  const outcome = r.stages.get(key);
  if (outcome === 'open') return key;
  if (outcome === undefined) {
    const known = [...r.stages.keys()];
    const hint = didYouMean(key, known) || ` (known stages: ${orList(known)})`;
    report(r, node, path, `unknown stage "${key}"${hint}`);
  } else {
    const why = 'steps apply only to open stages';
    report(r, node, path, `stage "${key}" is ${outcome}, not open (${why})`);
  }
  return undefined;
}
