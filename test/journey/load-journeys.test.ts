import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  formatJourneyProblem,
  loadJourneysFile,
  parseJourneys,
} from '../../src/journey/load-journeys.ts';
import type { JourneyRules, UnsupportedFeature } from '../../src/journey/load-journeys.ts';
import type { Journey, Step } from '../../src/journey/types.ts';

const FILE = 'templates/journeys.yaml';

const RULES: JourneyRules = {
  stages: [
    { key: 'qualification', outcome: 'open' },
    { key: 'proposal', outcome: 'open' },
    { key: 'negotiation', outcome: 'open' },
    { key: 'won', outcome: 'won' },
    { key: 'lost', outcome: 'lost' },
  ],
  templateExists: (name) =>
    ['closing-soon', 'last-call', 'proposal-follow-up', 'owner-update-closing-date'].includes(name),
  unsupported: new Set(),
};

/** One array element per line, so line N of the file is element N (counting from 1). */
function yaml(...lines: string[]): string {
  return `${lines.join('\n')}\n`;
}

/** A valid one-step file: lines 1 to 4. Cases append from line 5. */
const HEAD = [
  'steps:',
  '  - id: a',
  '    template: closing-soon',
  '    trigger: { closingDate: { daysBefore: 14 } }',
];

const NINE_AM = { hour: 9, minute: 0 };
const DEFAULT_TIMING = { sendAt: NINE_AM, windowMinutes: 1440, quietHours: null, skipWeekends: false };

/** The step HEAD describes, with every default. */
const HEAD_STEP: Step = {
  id: 'a',
  template: 'closing-soon',
  trigger: { kind: 'closingDate', offsetDays: -14 },
  to: { kind: 'primary' },
  stages: null,
  minProbability: null,
  minAmount: null,
  skipIfRecentActivityMinutes: null,
  repeat: 'never',
  timing: DEFAULT_TIMING,
  line: 2,
};

function parse(text: string, rules: JourneyRules = RULES) {
  return parseJourneys(text, FILE, rules);
}

function messages(text: string, rules: JourneyRules = RULES): string[] {
  return parse(text, rules).problems.map(formatJourneyProblem);
}

describe('parseJourneys: one problem, where it is', () => {
  // [what, file lines, line:column, fragment of the message]
  const cases: Array<[string, string[], string, string]> = [
    // keys
    ['misspelt step key', ['steps:', '  - id: a', '    templte: closing-soon', HEAD[3]!], '3:5',
      'steps[0]: unknown key "templte" (did you mean "template"?)'],
    ['two letters swapped (edit distance 2)', ['steps:', '  - id: a', '    tempalte: closing-soon', HEAD[3]!],
      '3:5', 'steps[0]: unknown key "tempalte" (did you mean "template"?)'],
    ['misspelt trigger key', [...HEAD.slice(0, 3), '    trigger: { closingdate: { daysBefore: 14 } }'], '4:16',
      'steps[0].trigger: unknown key "closingdate" (did you mean "closingDate"?)'],
    ['misspelt defaults key', ['defaults:', '  timezone: UTC', ...HEAD], '2:3',
      'defaults: unknown key "timezone" (did you mean "timeZone"?)'],
    ['unknown step key, nothing near', [...HEAD, '    priority: high'], '5:5',
      'steps[0]: unknown key "priority" (expected id, template, trigger, to, stages,'],
    ['unknown top-level key', ['journey: welcome', ...HEAD], '1:1',
      'unknown top-level key "journey" (expected defaults or steps)'],
    ['misspelt top-level key', ['step:', '  - id: a'], '1:1',
      'unknown top-level key "step" (did you mean "steps"?)'],
    ['missing steps', ['defaults:', '  timeZone: UTC'], '1:1', 'missing "steps"'],
    ['missing trigger', HEAD.slice(0, 3), '2:5', 'steps[0]: missing "trigger"'],
    ['empty file', ['# nothing yet'], '1:1', 'the file is empty'],
    // durations and times
    ['duration with a space', ['defaults:', '  window: 24 hours', ...HEAD], '2:11',
      'defaults.window: expected a duration of a whole number then m, h or d, e.g. "24h", found "24 hours"'],
    ['zero window', [...HEAD, '    window: 0h'], '5:13',
      'steps[0].window: expected a duration of more than 0, found "0h"'],
    ['duration without unit', [...HEAD, '    skipIfRecentActivity: 2'], '5:27',
      'steps[0].skipIfRecentActivity: expected a duration of a whole number then m, h or d'],
    ['sendAt not HH:MM', ['defaults:', '  sendAt: "9am"', ...HEAD], '2:11',
      'defaults.sendAt: expected a time of day "HH:MM" (24-hour, e.g. "09:00"), found "9am"'],
    ['sendAt 24:00', [...HEAD, '    sendAt: "24:00"'], '5:13', 'steps[0].sendAt: expected a time of day'],
    ['quiet hours with a bad time', ['defaults:', '  quietHours: { from: "8pm", to: "08:00" }', ...HEAD],
      '2:23', 'defaults.quietHours.from: expected a time of day'],
    ['quiet hours from == to', ['defaults:', '  quietHours: { from: "20:00", to: "20:00" }', ...HEAD],
      '2:36', 'defaults.quietHours.to: expected a time other than "from"'],
    ['unknown time zone', ['defaults:', '  timeZone: Europe/Brusels', ...HEAD], '2:13',
      'defaults.timeZone: unknown time zone "Europe/Brusels"'],
    // triggers and audiences
    ['daysAfter on a customer step',
      ['steps:', '  - id: late', '    template: last-call', '    trigger: { closingDate: { daysAfter: 1 } }'],
      '4:31', 'steps[0].trigger.closingDate: only owner steps may fire after the closing date'],
    ['daysAfter on a role step',
      [...HEAD.slice(0, 3), '    trigger: { closingDate: { daysAfter: 0 } }', '    to: { role: buyer }'],
      '4:31', 'only owner steps may fire after the closing date'],
    ['two triggers',
      [...HEAD.slice(0, 3), '    trigger: { closingDate: { daysBefore: 1 }, stageEntered: { stage: proposal } }'],
      '4:48', 'steps[0].trigger: expected exactly one of closingDate or stageEntered'],
    ['daysBefore and daysAfter',
      [...HEAD.slice(0, 3), '    trigger: { closingDate: { daysBefore: 1, daysAfter: 1 } }'],
      '4:46', 'steps[0].trigger.closingDate: expected daysBefore or daysAfter, not both'],
    ['empty closingDate', [...HEAD.slice(0, 3), '    trigger: { closingDate: {} }'], '4:29',
      'steps[0].trigger.closingDate: expected daysBefore or daysAfter'],
    ['trigger not a mapping', [...HEAD.slice(0, 3), '    trigger: closingDate'], '4:14',
      'steps[0].trigger: expected a mapping (key: value), found "closingDate"'],
    ['misspelt audience', [...HEAD, '    to: ownr'], '5:9',
      'steps[0].to: expected primary, owner or { role: NAME }, found "ownr" (did you mean "owner"?)'],
    ['empty role', [...HEAD, '    to: { role: "" }'], '5:17', 'steps[0].to.role: expected a role name'],
    ['unknown repeat', [...HEAD, '    repeat: always'], '5:13',
      'steps[0].repeat: expected never or onNewClosingDate, found "always"'],
    // stages
    ['unknown stage entered',
      [...HEAD.slice(0, 3), '    trigger: { stageEntered: { stage: propsal, daysAfter: 2 } }'], '4:39',
      'steps[0].trigger.stageEntered.stage: unknown stage "propsal" (did you mean "proposal"?)'],
    ['lost stage entered', [...HEAD.slice(0, 3), '    trigger: { stageEntered: { stage: lost } }'], '4:39',
      'steps[0].trigger.stageEntered.stage: stage "lost" is lost, not open'],
    ['unknown stage in stages', [...HEAD, '    stages: [qualification, discovery]'], '5:29',
      'steps[0].stages[1]: unknown stage "discovery" (known stages: qualification, proposal, negotiation, won or lost)'],
    ['won stage in stages', [...HEAD, '    stages: [proposal, won]'], '5:24',
      'steps[0].stages[1]: stage "won" is won, not open'],
    ['empty stages', [...HEAD, '    stages: []'], '5:13', 'steps[0].stages: expected at least one stage'],
    ['stages not a list', [...HEAD, '    stages: qualification'], '5:13',
      'steps[0].stages: expected a list, found "qualification"'],
    // templates and ids
    ['missing template', ['steps:', '  - id: a', '    template: closing-son', HEAD[3]!], '3:15',
      'steps[0].template: template "closing-son" not found (no file closing-son.hbs in the templates folder)'],
    ['template with extension', ['steps:', '  - id: a', '    template: closing-soon.hbs', HEAD[3]!], '3:15',
      'steps[0].template: expected a template name'],
    ['duplicate id',
      [...HEAD, '  - id: a', '    template: last-call', '    trigger: { closingDate: { daysBefore: 3 } }'],
      '5:9', 'steps[1].id: duplicate id "a" (first used at line 2)'],
    ['bad id', ['steps:', '  - id: Closing 14', ...HEAD.slice(2)], '2:9',
      'steps[0].id: expected an id of lowercase letters, digits, "-" and "_"'],
    // types
    ['numeric id', ['steps:', '  - id: 2024', ...HEAD.slice(2)], '2:9',
      'steps[0].id: expected text, found 2024 (write it in quotes: "2024")'],
    ['quoted daysBefore', [...HEAD.slice(0, 3), '    trigger: { closingDate: { daysBefore: "14" } }'], '4:43',
      'steps[0].trigger.closingDate.daysBefore: expected a whole number from 0 to 3650, found "14"'],
    ['negative daysBefore', [...HEAD.slice(0, 3), '    trigger: { closingDate: { daysBefore: -1 } }'], '4:43',
      'expected a whole number from 0 to 3650, found -1'],
    ['fractional daysBefore', [...HEAD.slice(0, 3), '    trigger: { closingDate: { daysBefore: 1.5 } }'],
      '4:43', 'expected a whole number from 0 to 3650, found 1.5'],
    ['daysBefore beyond ten years', [...HEAD.slice(0, 3), '    trigger: { closingDate: { daysBefore: 99999 } }'],
      '4:43', 'expected a whole number from 0 to 3650, found 99999'],
    ['window beyond a year', [...HEAD, '    window: 99999999d'], '5:13', 'steps[0].window: expected a duration of at most 366d'],
    ['minProbability over 100', [...HEAD, '    minProbability: 150'], '5:21',
      'steps[0].minProbability: expected a number from 0 to 100, found 150'],
    ['quoted minProbability', [...HEAD, '    minProbability: "20"'], '5:21',
      'expected a number from 0 to 100, found "20"'],
    ['negative minAmount', [...HEAD, '    minAmount: -5'], '5:16', 'steps[0].minAmount: expected an amount >= 0'],
    ['minAmount with a comma', [...HEAD, '    minAmount: "1,000"'], '5:16', 'found "1,000"'],
    ['yes for a boolean', [...HEAD, '    skipWeekends: yes'], '5:19',
      'steps[0].skipWeekends: expected true or false, found "yes"'],
    ['frequency cap of 0', ['defaults:', '  frequencyCap: { max: 0, perDays: 2 }', ...HEAD], '2:24',
      'defaults.frequencyCap.max: expected a whole number from 1 to 1000, found 0'],
    ['fractional perDays', ['defaults:', '  frequencyCap: { max: 1, perDays: 1.5 }', ...HEAD], '2:36',
      'defaults.frequencyCap.perDays: expected a whole number from 1 to 366, found 1.5'],
    ['perDays beyond a year', ['defaults:', '  frequencyCap: { max: 1, perDays: 999999999 }', ...HEAD], '2:36',
      'defaults.frequencyCap.perDays: expected a whole number from 1 to 366, found 999999999'],
    ['steps as a mapping', ['steps:', '  id: a'], '2:3', 'steps: expected a list, found a mapping'],
    ['no steps', ['steps: []'], '1:8', 'steps: expected at least one step'],
    ['defaults as text', ['defaults: none', ...HEAD], '1:11', 'defaults: expected a mapping (key: value), found "none"'],
    ['alias to no anchor', [...HEAD.slice(0, 3), '    trigger: *soon'], '4:14',
      'steps[0].trigger: expected a mapping (key: value), found *soon, an alias to no anchor'],
    // YAML itself
    ['duplicated key', [...HEAD, '    template: last-call'], '5:5', 'invalid YAML: Map keys must be unique'],
    ['tab indentation', ['steps:', '\t- id: a'], '2:1', 'invalid YAML: Tabs are not allowed as indentation'],
    // The quoted text runs to the end of the file: line 5, after the last newline.
    ['unclosed quote', ['steps:', '  - id: "a', ...HEAD.slice(2)], '5:1', 'invalid YAML: Missing closing "quote'],
  ];

  it.each(cases)('%s', (_, lines, at, fragment) => {
    const result = parse(yaml(...lines));
    expect(result.journey).toBeNull();
    expect(result.problems.map(formatJourneyProblem)).toEqual([
      expect.stringMatching(new RegExp(`^${escape(`${FILE}:${at}: `)}.*${escape(fragment)}`)),
    ]);
  });
});

describe('parseJourneys: a YAML error that makes others', () => {
  it('is reported once, with a count of the errors after it (one missing brace made 29 lines)', () => {
    const result = parse(yaml('steps:', '  - id: a', '    template: closing-soon', '    trigger: { closingDate: { daysBefore: 3 }',
      '  - id: b', '    template: closing-soon', '    trigger: { closingDate: { daysBefore: 7 } }'));
    expect(result.journey).toBeNull();
    expect(result.problems.map(formatJourneyProblem)).toEqual([
      expect.stringMatching(new RegExp(`^${escape(FILE)}:\\d+:\\d+: invalid YAML: .* \\(and \\d+ more YAML errors? after it, often caused by this one: fix it first\\)$`)),
    ]);
  });
});

describe('parseJourneys: features the engine does not implement yet', () => {
  const cases: Array<[UnsupportedFeature, string[], string, string]> = [
    ['quietHours', ['defaults:', '  quietHours: { from: "20:00", to: "08:00" }', ...HEAD], '2:3',
      'defaults: "quietHours" is not supported yet'],
    ['quietHours', [...HEAD, '    quietHours: null'], '5:5', 'steps[0]: "quietHours" is not supported yet'],
    ['skipWeekends', ['defaults:', '  skipWeekends: false', ...HEAD], '2:3',
      'defaults: "skipWeekends" is not supported yet'],
    ['skipWeekends', [...HEAD, '    skipWeekends: true'], '5:5', 'steps[0]: "skipWeekends" is not supported yet'],
    ['frequencyCap', ['defaults:', '  frequencyCap: { max: 1, perDays: 2 }', ...HEAD], '2:3',
      'defaults: "frequencyCap" is not supported yet'],
    ['skipIfRecentActivity', [...HEAD, '    skipIfRecentActivity: 2d'], '5:5',
      'steps[0]: "skipIfRecentActivity" is not supported yet'],
    ['repeat', [...HEAD, '    repeat: never'], '5:5', 'steps[0]: "repeat" is not supported yet'],
    ['toRole', [...HEAD, '    to: { role: decision-maker }'], '5:11', 'steps[0].to: "role" is not supported yet'],
  ];

  it.each(cases)('%s (%#)', (feature, lines, at, message) => {
    const result = parse(yaml(...lines), { ...RULES, unsupported: new Set([feature]) });
    expect(result.journey).toBeNull();
    expect(result.problems.map(formatJourneyProblem)).toEqual([`${FILE}:${at}: ${message}`]);
  });

  it('accepts a file that uses none of them', () => {
    const all = new Set<UnsupportedFeature>([
      'quietHours', 'skipWeekends', 'frequencyCap', 'skipIfRecentActivity', 'repeat', 'toRole',
    ]);
    const result = parse(yaml(...HEAD, '    to: owner', '    sendAt: "10:00"'), { ...RULES, unsupported: all });
    expect(result.problems).toEqual([]);
    expect(result.journey?.steps[0]?.to).toEqual({ kind: 'owner' });
  });
});

describe('parseJourneys: a valid file', () => {
  it('reads every key, merging step timing over the defaults', () => {
    const text = yaml(
      '# Journeys for the demo pipeline',
      'defaults:',
      '  timeZone: Europe/Brussels',
      '  sendAt: "09:00"',
      '  quietHours: { from: "20:00", to: "08:00" }',
      '  frequencyCap: { max: 1, perDays: 2 }',
      '  window: 24h',
      '  skipWeekends: false',
      'steps:',
      '  - id: closing-in-14-days',
      '    template: closing-soon',
      '    trigger: { closingDate: { daysBefore: 14 } }',
      '    stages: [qualification, proposal, negotiation]',
      '    minProbability: 20',
      '    minAmount: 1000',
      '  - id: closing-in-3-days',
      '    template: last-call',
      '    trigger: { closingDate: { daysBefore: 3 } }',
      '    skipIfRecentActivity: 2d',
      '    repeat: onNewClosingDate',
      '    sendAt: "10:30"',
      '    window: 12h',
      '    quietHours: null            # this step may go out at any hour',
      '  - id: proposal-follow-up',
      '    template: proposal-follow-up',
      '    trigger: { stageEntered: { stage: proposal } }',
      '    to: { role: decision-maker }',
      '    quietHours: { from: "21:00", to: "07:00" }',
      '    skipWeekends: true',
      '    minAmount: "2500.50"',
      '  - id: update-closing-date',
      '    to: owner',
      '    template: owner-update-closing-date',
      '    trigger: { closingDate: { daysAfter: 1 } }',
    );
    const quiet = { from: { hour: 20, minute: 0 }, to: { hour: 8, minute: 0 } };
    const defaultTiming = { sendAt: NINE_AM, windowMinutes: 1440, quietHours: quiet, skipWeekends: false };
    const expected: Journey = {
      file: FILE,
      defaults: { timeZone: 'Europe/Brussels', frequencyCap: { max: 1, perDays: 2 } },
      steps: [
        {
          id: 'closing-in-14-days',
          template: 'closing-soon',
          trigger: { kind: 'closingDate', offsetDays: -14 },
          to: { kind: 'primary' },
          stages: ['qualification', 'proposal', 'negotiation'],
          minProbability: 20,
          minAmount: '1000',
          skipIfRecentActivityMinutes: null,
          repeat: 'never',
          timing: defaultTiming,
          line: 10,
        },
        {
          id: 'closing-in-3-days',
          template: 'last-call',
          trigger: { kind: 'closingDate', offsetDays: -3 },
          to: { kind: 'primary' },
          stages: null,
          minProbability: null,
          minAmount: null,
          skipIfRecentActivityMinutes: 2880,
          repeat: 'onNewClosingDate',
          timing: { sendAt: { hour: 10, minute: 30 }, windowMinutes: 720, quietHours: null, skipWeekends: false },
          line: 16,
        },
        {
          id: 'proposal-follow-up',
          template: 'proposal-follow-up',
          trigger: { kind: 'stageEntered', stage: 'proposal', daysAfter: 0 },
          to: { kind: 'role', role: 'decision-maker' },
          stages: null,
          minProbability: null,
          minAmount: '2500.5',
          skipIfRecentActivityMinutes: null,
          repeat: 'never',
          timing: {
            sendAt: NINE_AM,
            windowMinutes: 1440,
            quietHours: { from: { hour: 21, minute: 0 }, to: { hour: 7, minute: 0 } },
            skipWeekends: true,
          },
          line: 24,
        },
        {
          id: 'update-closing-date',
          template: 'owner-update-closing-date',
          trigger: { kind: 'closingDate', offsetDays: 1 },
          to: { kind: 'owner' },
          stages: null,
          minProbability: null,
          minAmount: null,
          skipIfRecentActivityMinutes: null,
          repeat: 'never',
          timing: defaultTiming,
          line: 31,
        },
      ],
    };
    expect(parse(text)).toEqual({ journey: expected, problems: [] });
  });

  it('applies the defaults of SPEC section 3 when `defaults` is left out', () => {
    expect(parse(yaml(...HEAD))).toEqual({
      journey: { file: FILE, defaults: { timeZone: 'UTC', frequencyCap: null }, steps: [HEAD_STEP] },
      problems: [],
    });
  });

  it('maps daysBefore 0 to offset 0 (the closing day), not -0', () => {
    const text = yaml(...HEAD.slice(0, 3), '    trigger: { closingDate: { daysBefore: 0 } }');
    const trigger = parse(text).journey?.steps[0]?.trigger;
    expect(trigger?.kind === 'closingDate' && Object.is(trigger.offsetDays, 0)).toBe(true);
  });

  it('reads an unquoted sendAt, a stage entered with its delay, and follows aliases', () => {
    const text = yaml(
      'defaults:',
      '  sendAt: 08:15',
      'steps:',
      '  - id: follow-up',
      '    template: proposal-follow-up',
      '    trigger: { stageEntered: { stage: proposal, daysAfter: 2 } }',
      '    stages: &open [qualification, proposal]',
      '  - { id: follow-up-2, template: last-call, trigger: { closingDate: { daysBefore: 1 } }, stages: *open }',
    );
    const steps = parse(text).journey?.steps;
    expect(steps?.map((s) => [s.trigger, s.stages, s.timing.sendAt, s.line])).toEqual([
      [{ kind: 'stageEntered', stage: 'proposal', daysAfter: 2 }, ['qualification', 'proposal'], { hour: 8, minute: 15 }, 4],
      [{ kind: 'closingDate', offsetDays: -1 }, ['qualification', 'proposal'], { hour: 8, minute: 15 }, 8],
    ]);
  });

  it.each([
    ['1000', '1000'],
    ['1000.5', '1000.5'],
    ['"1000.50"', '1000.5'],
    ['"0012000.00"', '12000'],
    ['0', '0'],
    ['1e3', '1000'],
    ['1e21', '1000000000000000000000'],
    ['1e-6', '0.000001'],
  ])('stores minAmount %s as the decimal string %s', (written, stored) => {
    expect(parse(yaml(...HEAD, `    minAmount: ${written}`)).journey?.steps[0]?.minAmount).toBe(stored);
  });

  it('refuses a minAmount with more decimals than an amount can compare', () => {
    expect(messages(yaml(...HEAD, '    minAmount: 1.5e-7'))).toEqual([
      `${FILE}:5:16: steps[0].minAmount: expected an amount >= 0 with at most 6 decimals, e.g. 1000 or "1000.50", found 1.5e-7`,
    ]);
  });

  it('checks neither stages nor templates when the rules give none', () => {
    const text = yaml(
      'steps:',
      '  - id: a',
      '    template: anything',
      '    trigger: { stageEntered: { stage: any-stage } }',
      '    stages: [won]',
    );
    const result = parse(text, { stages: null, templateExists: null, unsupported: new Set() });
    expect(result.problems).toEqual([]);
    expect(result.journey?.steps[0]?.stages).toEqual(['won']);
  });
});

describe('parseJourneys: several problems at once', () => {
  it('reports every problem, in file order, and no journey', () => {
    const text = yaml(
      'defaults:',
      '  timeZone: Europe/Brusels',
      '  window: 1 day',
      'steps:',
      '  - id: closing-in-14-days',
      '    templte: closing-soon',
      '    trigger: { closingDate: { daysBefore: 14 } }',
      '    stages: [proposal, won]',
      '  - id: closing-in-14-days',
      '    template: last-call',
      '    trigger: { closingDate: { daysAfter: 1 } }',
      '    minProbability: 120',
    );
    const result = parse(text);
    expect(result.journey).toBeNull();
    expect(result.problems.map(formatJourneyProblem)).toEqual([
      `${FILE}:2:13: defaults.timeZone: unknown time zone "Europe/Brusels" (expected an IANA name such as "Europe/Brussels")`,
      `${FILE}:3:11: defaults.window: expected a duration of a whole number then m, h or d, e.g. "24h", found "1 day"`,
      `${FILE}:6:5: steps[0]: unknown key "templte" (did you mean "template"?)`,
      `${FILE}:8:24: steps[0].stages[1]: stage "won" is won, not open (steps apply only to open stages)`,
      `${FILE}:9:9: steps[1].id: duplicate id "closing-in-14-days" (first used at line 5)`,
      `${FILE}:11:31: steps[1].trigger.closingDate: only owner steps may fire after the closing date (add "to: owner", or use daysBefore: 0 for the closing day itself)`,
      `${FILE}:12:21: steps[1].minProbability: expected a number from 0 to 100, found 120`,
    ]);
  });
});

describe('loadJourneysFile', () => {
  it('reads and parses the file, naming it by its path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nudge-journeys-'));
    try {
      const path = join(dir, 'journeys.yaml');
      writeFileSync(path, yaml(...HEAD));
      expect(loadJourneysFile(path, RULES)).toEqual({
        journey: { file: path, defaults: { timeZone: 'UTC', frequencyCap: null }, steps: [HEAD_STEP] },
        problems: [],
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports a missing file as one problem at line 1', () => {
    const path = join(tmpdir(), 'nudge-no-such-dir', 'journeys.yaml');
    const result = loadJourneysFile(path, RULES);
    expect(result.journey).toBeNull();
    expect(result.problems.map(formatJourneyProblem)).toEqual([
      `${path}:1:1: cannot read the journey file: no such file (it is NUDGE_JOURNEYS, else journeys.yaml in NUDGE_TEMPLATES_DIR)`,
    ]);
  });
});

describe('formatJourneyProblem', () => {
  it('prints file:line:column: message', () => {
    const problem = { file: FILE, line: 12, column: 7, message: 'steps[2].trigger: unknown key "x"' };
    expect(formatJourneyProblem(problem)).toBe(`${FILE}:12:7: steps[2].trigger: unknown key "x"`);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
