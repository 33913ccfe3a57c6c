/**
 * Tests for `nudge forecast` (SPEC section 6): the pure figures of src/forecast.ts, the keyset read
 * of src/db/forecast-rows.ts, and the command as a user runs it.
 *
 * Unless a case says otherwise, now is 2026-12-01T09:00:00Z in Europe/Brussels (CET, UTC+1), so
 * today is 2026-12-01 and the windows end before 2026-12-08 (7d), 2026-12-31 (30d) and
 * 2027-03-01 (3m). Every expected figure below is computed by hand in the comment beside it.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readForecastRows } from '../src/db/forecast-rows.ts';
import { computeForecast, type Forecast, type ForecastRow, type ForecastWindow } from '../src/forecast.ts';
import { formatCents } from '../src/journey/money.ts';
import { runNudge } from './helpers/cli.ts';
import { insertOpportunity } from './helpers/fixtures.ts';
import { createWorld, type World } from './helpers/world.ts';

const NOW = new Date('2026-12-01T09:00:00Z');
const BRUSSELS = 'Europe/Brussels';

const STAGES = {
  qualification: { probability: 10, stagePosition: 1 },
  needs_analysis: { probability: 25, stagePosition: 2 },
  proposal: { probability: 50, stagePosition: 3 },
  negotiation: { probability: 75, stagePosition: 4 },
} as const;

function row(closingDate: string | null, amount: string | null, stage: keyof typeof STAGES = 'proposal', currency = 'EUR'): ForecastRow {
  return { closingDate, amount, currency, stage, ...STAGES[stage] };
}

function forecast(rows: ForecastRow[], now = NOW, timeZone = BRUSSELS): Forecast {
  return computeForecast(rows, now, timeZone);
}

/** `window currency: opportunities/withoutAmount amount expected`, one string per entry. */
function windowLines(f: Forecast): string[] {
  return f.windows.map((w) => `${w.window} ${w.currency}: ${w.opportunities}/${w.withoutAmount} ${w.amount} ${w.expected}`);
}

describe('expected revenue is exact, rounded half up once', () => {
  it.each([
    // 12000.00 × 50 / 100 = 6000.
    ['EUR 12000.00 at proposal (50 %)', [row('2026-12-03', '12000.00', 'proposal')], '12000.00', '6000.00'],
    // 999.99 × 10 / 100 = 99.999, half up: 100.00.
    ['999.99 at qualification (10 %)', [row('2026-12-03', '999.99', 'qualification')], '999.99', '100.00'],
    // 3 × 0.05 × 10 / 100 = 0.015 → 0.02. Rounding each term (0.005 → 0.01) would give 0.03;
    // truncating each term would give 0.00.
    ['3 × 0.05 at 10 %', [1, 2, 3].map(() => row('2026-12-03', '0.05', 'qualification')), '0.15', '0.02'],
    // 2500.50 × 25 / 100 = 625.125 → 625.13.
    ['2500.50 at needs_analysis (25 %)', [row('2026-12-03', '2500.50', 'needs_analysis')], '2500.50', '625.13'],
    // 999.99 × 10 % + 3 × 0.05 × 10 % = 99.999 + 0.015 = 100.014 → 100.01 (rounded terms: 100.03).
    ['999.99 and 3 × 0.05 at 10 %', [row('2026-12-03', '999.99', 'qualification'), ...[1, 2, 3].map(() => row('2026-12-03', '0.05', 'qualification'))], '1000.14', '100.01'],
  ])('%s', (_name, rows, amount, expected) => {
    const f = forecast(rows);
    expect(f.windows.map((w) => [w.window, w.amount, w.expected])).toEqual([['7d', amount, expected], ['30d', amount, expected], ['3m', amount, expected]]);
  });

  it('counts blank amounts in withoutAmount, adding nothing', () => {
    const f = forecast([row('2026-12-03', null, 'negotiation'), row('2026-12-04', '100.00', 'negotiation'), row('2026-12-05', null, 'qualification')]);
    // 100.00 × 75 % = 75.00; the two blanks count as opportunities only.
    expect(f.windows[0]).toEqual({ window: '7d', currency: 'EUR', opportunities: 3, withoutAmount: 2, amount: '100.00', expected: '75.00' });
    expect(f.byStage.filter((s) => s.window === '7d')).toEqual([
      { window: '7d', currency: 'EUR', stage: 'qualification', opportunities: 1, withoutAmount: 1, amount: '0.00', expected: '0.00' },
      { window: '7d', currency: 'EUR', stage: 'negotiation', opportunities: 2, withoutAmount: 1, amount: '100.00', expected: '75.00' },
    ]);
  });

  it('never adds two currencies, and orders them alphabetically', () => {
    const f = forecast([
      row('2026-12-02', '1000.00', 'proposal', 'USD'), row('2026-12-02', '1000.00', 'proposal', 'EUR'),
      row('2026-12-03', '200.00', 'negotiation', 'CHF'), row('2026-12-04', '10.00', 'qualification', 'USD'),
    ]);
    // USD: 1000.00 × 50 % + 10.00 × 10 % = 500.00 + 1.00; CHF: 200.00 × 75 % = 150.00.
    expect(windowLines(f).filter((l) => l.startsWith('7d'))).toEqual([
      '7d CHF: 1/0 200.00 150.00', '7d EUR: 1/0 1000.00 500.00', '7d USD: 2/0 1010.00 501.00',
    ]);
  });

  it('trims the padding of char(3)', () => {
    const f = forecast([row('2026-12-02', '1.00', 'proposal', 'XX '), row('2026-12-02', '1.00', 'proposal', 'XX')]);
    expect(windowLines(f)[0]).toBe('7d XX: 2/0 2.00 1.00');
  });

  it('takes eur for EUR: one currency, whatever the letters\' case', () => {
    const f = forecast([row('2026-12-02', '1.00', 'proposal', 'eur'), row('2026-12-02', '2.00', 'proposal', 'EUR')]);
    expect(windowLines(f)[0]).toBe('7d EUR: 2/0 3.00 1.50');
  });

  it('counts an amount that is not a number (NaN, which numeric accepts) as without amount, and names it', () => {
    const f = forecast([{ ...row('2026-12-02', 'NaN'), id: 41 }, row('2026-12-02', '10.00')]);
    // 10.00 × 50 % = 5.00; the NaN row counts as an opportunity only.
    expect(windowLines(f)[0]).toBe('7d EUR: 2/1 10.00 5.00');
    expect(f.unreadableAmounts).toEqual({ opportunities: 1, ids: [41] });
    expect(forecast([row('2026-12-02', '10.00')]).unreadableAmounts).toEqual({ opportunities: 0, ids: [] });
    expect(() => forecast([row('2026-12-02', '12,50')])).toThrow(/not a decimal number/);
  });

  it('takes a day before the year 1 (PostgreSQL writes 2027-01-01 BC) as stale', () => {
    const f = forecast([row('2027-01-01 BC', '10.00')]);
    expect(f.windows).toEqual([]);
    expect(f.stale).toEqual([{ currency: 'EUR', opportunities: 1, withoutAmount: 0, amount: '10.00', expected: '5.00' }]);
  });

  it('refuses a probability that is not a whole percent', () => {
    expect(() => forecast([{ ...row('2026-12-02', '1.00'), probability: 12.5 }])).toThrow(/whole percent/);
  });

  it('formatCents divides once and rounds half up, away from zero', () => {
    expect(formatCents(15_000_000n, 1000n)).toBe('0.02'); // 0.015
    expect(formatCents(14_999_999n, 1000n)).toBe('0.01'); // 0.014999999
    expect(formatCents(-15_000_000n, 1000n)).toBe('-0.02');
    expect(formatCents(1_234_560_000n)).toBe('1234.56'); // the one-argument form as before
  });
});

describe('windows', () => {
  const inWindows = (f: Forecast): ForecastWindow[] | 'stale' => (f.stale.length ? 'stale' : f.windows.map((w) => w.window));

  it.each([
    ['2026-11-30', 'stale'],
    ['2026-12-01', ['7d', '30d', '3m']], // today is in
    ['2026-12-07', ['7d', '30d', '3m']], // today + 6
    ['2026-12-08', ['30d', '3m']], // today + 7
    ['2026-12-30', ['30d', '3m']], // today + 29
    ['2026-12-31', ['3m']], // today + 30
    ['2027-02-28', ['3m']],
    ['2027-03-01', []], // today + 3 months
  ] as const)('closing on %s: %j', (closingDate, expected) => {
    expect(inWindows(forecast([row(closingDate, '10.00')]))).toEqual(expected);
  });

  it('3 months from 2026-11-30 end before 2027-02-28 (no 30 February)', () => {
    const now = new Date('2026-11-30T12:00:00Z');
    expect(forecast([], now).before).toEqual({ '7d': '2026-12-07', '30d': '2026-12-30', '3m': '2027-02-28' });
    expect(inWindows(forecast([row('2027-02-27', '10.00')], now))).toEqual(['3m']);
    expect(inWindows(forecast([row('2027-02-28', '10.00')], now))).toEqual([]);
  });

  it('today is the day in the journey time zone, not in UTC', () => {
    // 2026-12-01T12:00Z is 2026-12-02 01:00 in Auckland (NZDT, UTC+13).
    const now = new Date('2026-12-01T12:00:00Z');
    const rows = [row('2026-12-01', '100.00'), row('2026-12-08', '40.00')];
    const auckland = forecast(rows, now, 'Pacific/Auckland');
    expect(auckland).toMatchObject({ asOf: '2026-12-02', timeZone: 'Pacific/Auckland', before: { '7d': '2026-12-09' } });
    // 2026-12-01 has passed there; 2026-12-08 is today + 6. 40.00 × 50 % = 20.00.
    expect(auckland.stale).toEqual([{ currency: 'EUR', opportunities: 1, withoutAmount: 0, amount: '100.00', expected: '50.00' }]);
    expect(windowLines(auckland)).toEqual(['7d EUR: 1/0 40.00 20.00', '30d EUR: 1/0 40.00 20.00', '3m EUR: 1/0 40.00 20.00']);
    // The same instant in UTC is still 2026-12-01: nothing is stale, and 12-08 is today + 7.
    const utc = forecast(rows, now, 'UTC');
    expect(utc.asOf).toBe('2026-12-01');
    expect(utc.stale).toEqual([]);
    expect(windowLines(utc)).toEqual(['7d EUR: 1/0 100.00 50.00', '30d EUR: 2/0 140.00 70.00', '3m EUR: 2/0 140.00 70.00']);
  });

  it('orders byStage by window, currency, then stage position (not by name)', () => {
    const f = forecast([row('2026-12-02', '1.00', 'proposal'), row('2026-12-02', '1.00', 'needs_analysis'), row('2026-12-02', '1.00', 'qualification'), row('2026-12-02', '1.00', 'proposal', 'CHF')]);
    expect(f.byStage.filter((s) => s.window === '7d').map((s) => `${s.currency} ${s.stage}`)).toEqual([
      'CHF proposal', 'EUR qualification', 'EUR needs_analysis', 'EUR proposal',
    ]);
  });

  it('counts opportunities without a closing date in no window', () => {
    const f = forecast([row(null, '500.00'), row(null, null)]);
    expect(f).toMatchObject({ windows: [], byStage: [], stale: [], noClosingDate: 2 });
  });
});

describe('against PostgreSQL', () => {
  let world: World;

  beforeAll(async () => {
    world = await createWorld();
    const db = world.database.db;
    const opportunities: Parameters<typeof insertOpportunity>[1][] = [
      { title: 'A', amount: '12000.00', stage: 'proposal', closing_date: '2026-12-03' }, // 7d
      { title: 'B', amount: null, stage: 'qualification', closing_date: '2026-12-07' }, // 7d, blank
      { title: 'C', amount: '999.99', stage: 'qualification', closing_date: '2026-12-08' }, // 30d
      { title: 'D1', amount: '0.05', stage: 'qualification', closing_date: '2026-12-30' }, // 30d
      { title: 'D2', amount: '0.05', stage: 'qualification', closing_date: '2026-12-30' },
      { title: 'D3', amount: '0.05', stage: 'qualification', closing_date: '2026-12-30' },
      { title: 'E', amount: '5000.00', currency: 'USD', stage: 'negotiation', closing_date: '2026-12-31' }, // 3m
      { title: 'G', amount: '2500.50', stage: 'needs_analysis', closing_date: '2027-02-28' }, // 3m
      { title: 'H', amount: '100000.00', stage: 'proposal', closing_date: '2027-03-01' }, // beyond 3m
      { title: 'Won', amount: '7777.00', stage: 'won', closing_date: '2026-12-02' },
      { title: 'Lost', amount: '8888.00', stage: 'lost', closing_date: '2026-12-02' },
      { title: 'Won long ago', amount: '6666.00', stage: 'won', closing_date: '2026-11-01' },
      { title: 'Stale 1', amount: '300.00', stage: 'negotiation', closing_date: '2026-11-30' },
      { title: 'Stale 2', amount: null, stage: 'proposal', closing_date: '2020-01-15' },
      { title: 'Stale 3', amount: '1234.56', currency: 'USD', stage: 'qualification', closing_date: '2026-06-01' },
      { title: 'Undated', amount: '5000.00', stage: 'proposal', closing_date: null },
      { title: 'Undated, won', amount: '5000.00', stage: 'won', closing_date: null },
    ];
    for (const o of opportunities) await insertOpportunity(db, o);
  });

  afterAll(async () => {
    await world?.close();
  });

  const nudge = (args: string[], env: Record<string, string> = {}) => runNudge(args, { ...world.env, ...env });

  it('nudge forecast --json prints the figures computed by hand', async () => {
    const r = await nudge(['forecast', '--now', '2026-12-01T09:00:00Z', '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const json = JSON.parse(r.stdout) as Forecast;
    expect(json).toMatchObject({ asOf: '2026-12-01', timeZone: 'Europe/Brussels', noClosingDate: 1 });
    expect(json.windows).toEqual([
      // A, B: 12000.00 × 50 % = 6000.00.
      { window: '7d', currency: 'EUR', opportunities: 2, withoutAmount: 1, amount: '12000.00', expected: '6000.00' },
      // + C, D1-3: 12000.00 + 999.99 + 0.15 = 13000.14; 6000 + 99.999 + 0.015 = 6100.014.
      { window: '30d', currency: 'EUR', opportunities: 6, withoutAmount: 1, amount: '13000.14', expected: '6100.01' },
      // + G: 13000.14 + 2500.50 = 15500.64; 6100.014 + 625.125 = 6725.139.
      { window: '3m', currency: 'EUR', opportunities: 7, withoutAmount: 1, amount: '15500.64', expected: '6725.14' },
      // E closes on today + 30: in 3m only. 5000.00 × 75 % = 3750.00.
      { window: '3m', currency: 'USD', opportunities: 1, withoutAmount: 0, amount: '5000.00', expected: '3750.00' },
    ]);
    expect(json.byStage).toEqual([
      { window: '7d', currency: 'EUR', stage: 'qualification', opportunities: 1, withoutAmount: 1, amount: '0.00', expected: '0.00' },
      { window: '7d', currency: 'EUR', stage: 'proposal', opportunities: 1, withoutAmount: 0, amount: '12000.00', expected: '6000.00' },
      // B, C, D1-3: 999.99 + 0.15 = 1000.14; 99.999 + 0.015 = 100.014.
      { window: '30d', currency: 'EUR', stage: 'qualification', opportunities: 5, withoutAmount: 1, amount: '1000.14', expected: '100.01' },
      { window: '30d', currency: 'EUR', stage: 'proposal', opportunities: 1, withoutAmount: 0, amount: '12000.00', expected: '6000.00' },
      { window: '3m', currency: 'EUR', stage: 'qualification', opportunities: 5, withoutAmount: 1, amount: '1000.14', expected: '100.01' },
      // 2500.50 × 25 % = 625.125.
      { window: '3m', currency: 'EUR', stage: 'needs_analysis', opportunities: 1, withoutAmount: 0, amount: '2500.50', expected: '625.13' },
      { window: '3m', currency: 'EUR', stage: 'proposal', opportunities: 1, withoutAmount: 0, amount: '12000.00', expected: '6000.00' },
      { window: '3m', currency: 'USD', stage: 'negotiation', opportunities: 1, withoutAmount: 0, amount: '5000.00', expected: '3750.00' },
    ]);
    expect(json.stale).toEqual([
      // Stale 1 (300.00 × 75 % = 225.00) and Stale 2 (blank); the won one is not stale.
      { currency: 'EUR', opportunities: 2, withoutAmount: 1, amount: '300.00', expected: '225.00' },
      // 1234.56 × 10 % = 123.456.
      { currency: 'USD', opportunities: 1, withoutAmount: 0, amount: '1234.56', expected: '123.46' },
    ]);
  });

  it('prints a table, the stages, the stale line and the undated count by default', async () => {
    const r = await nudge(['forecast', '--now', '2026-12-01T09:00:00Z']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^forecast as of 2026-12-01 \(Europe\/Brussels\)/);
    expect(r.stdout).toMatch(/^ {2}window +currency +opportunities +without amount +amount +expected$/m);
    expect(r.stdout).toMatch(/^ {2}30d +EUR +6 +1 +13000\.14 +6100\.01$/m);
    expect(r.stdout).toMatch(/^ {2}3m +EUR +needs_analysis +1 +0 +2500\.50 +625\.13$/m);
    expect(r.stdout).toContain('stale (closing date passed, still open): EUR 2 (1 without amount), amount 300.00, expected 225.00; USD 1 (0 without amount), amount 1234.56, expected 123.46\n');
    expect(r.stdout.trim().split('\n').at(-1)).toBe('no closing date: 1');
  });

  it('counts from today in the journey time zone', async () => {
    const shipped = readFileSync(path.join(world.templatesDir, 'journeys.yaml'), 'utf8');
    expect(shipped).toMatch(/timeZone: Europe\/Brussels/);
    world.write('auckland.yaml', shipped.replace('timeZone: Europe/Brussels', 'timeZone: Pacific/Auckland'));
    // 2026-12-01T12:00Z is 2026-12-02 01:00 in Auckland: 7d ends before 2026-12-09 and takes C.
    const r = await nudge(['forecast', '--now', '2026-12-01T12:00:00Z', '--json'], { NUDGE_JOURNEYS: path.join(world.templatesDir, 'auckland.yaml') });
    expect(r.code).toBe(0);
    const json = JSON.parse(r.stdout) as Forecast;
    expect(json).toMatchObject({ asOf: '2026-12-02', timeZone: 'Pacific/Auckland' });
    // A, B, C: 12000.00 + 999.99 = 12999.99; 6000 + 99.999 = 6099.999.
    expect(json.windows[0]).toEqual({ window: '7d', currency: 'EUR', opportunities: 3, withoutAmount: 1, amount: '12999.99', expected: '6100.00' });
  });

  it('reads the same days whatever DateStyle the database is set to', async () => {
    const iso = await nudge(['forecast', '--now', '2026-12-01T09:00:00Z', '--json']);
    expect(iso.code).toBe(0);
    const admin = world.database.db;
    for (const style of ['German, DMY', 'SQL, DMY', 'Postgres, MDY']) {
      await sql`alter database ${sql.id(world.database.name)} set datestyle = ${sql.lit(style)}`.execute(admin);
      try {
        const r = await nudge(['forecast', '--now', '2026-12-01T09:00:00Z', '--json']);
        expect(r.code, style).toBe(0);
        expect(JSON.parse(r.stdout), style).toEqual(JSON.parse(iso.stdout));
        // The setting is in force for a new session: what PostgreSQL itself writes is not ISO.
        const probe = new pg.Client({ connectionString: world.database.url });
        await probe.connect();
        try {
          const { rows } = await probe.query<{ d: string }>(`select date '2026-12-03'::text as d`);
          expect(rows[0]!.d).not.toBe('2026-12-03');
        } finally {
          await probe.end();
        }
      } finally {
        await sql`alter database ${sql.id(world.database.name)} reset datestyle`.execute(admin);
      }
    }
  });

  it('names an opportunity whose amount is not a number, and counts the rest', async () => {
    const id = await insertOpportunity(world.database.db, { title: 'NaN', amount: 'NaN', stage: 'proposal', closing_date: '2026-12-03' });
    try {
      const json = await nudge(['forecast', '--now', '2026-12-01T09:00:00Z', '--json']);
      expect(json.code).toBe(0);
      const f = JSON.parse(json.stdout) as Forecast;
      // A and B as before, and the NaN one without amount.
      expect(f.windows[0]).toEqual({ window: '7d', currency: 'EUR', opportunities: 3, withoutAmount: 2, amount: '12000.00', expected: '6000.00' });
      expect(f.unreadableAmounts).toEqual({ opportunities: 1, ids: [id] });
      const text = await nudge(['forecast', '--now', '2026-12-01T09:00:00Z']);
      expect(text.code).toBe(0);
      expect(text.stdout.trim().split('\n').at(-1)).toBe(`amount not a number (counted without amount): 1 (opportunities ${id})`);
    } finally {
      await world.database.db.deleteFrom('opportunities').where('id', '=', id).execute();
    }
  });

  it('refuses a --now on a day that does not exist, rather than rolling it over', async () => {
    for (const now of ['2026-02-30T12:00:00Z', '2026-11-31T00:00:00Z', '2027-02-29T09:00:00+01:00']) {
      const r = await nudge(['forecast', '--now', now]);
      expect(r.code, now).not.toBe(0);
      expect(r.stderr).toContain(`--now is not a valid instant: "${now}"`);
      expect(r.stdout).toBe('');
    }
    expect((await nudge(['forecast', '--now', '2028-02-29T09:00:00Z', '--json'])).code).toBe(0);
  });

  it('reads in keyset pages that break between rows of the same closing date', async () => {
    const pages: number[] = [];
    const seen: string[] = [];
    const { withoutClosingDate } = await readForecastRows(world.database.db, '2027-03-01', (rows) => {
      pages.push(rows.length);
      seen.push(...rows.map((r) => `${r.closingDate} ${r.stage}`));
    }, { pageSize: 2 });
    // 3 stale + 8 in the windows (H, the won and the lost are not read), in closing-date order.
    expect(pages).toEqual([2, 2, 2, 2, 2, 1]);
    expect(seen).toEqual([
      '2020-01-15 proposal', '2026-06-01 qualification', '2026-11-30 negotiation', '2026-12-03 proposal',
      '2026-12-07 qualification', '2026-12-08 qualification', '2026-12-30 qualification', '2026-12-30 qualification',
      '2026-12-30 qualification', '2026-12-31 negotiation', '2027-02-28 needs_analysis',
    ]);
    expect(withoutClosingDate).toBe(1);
  });
});
