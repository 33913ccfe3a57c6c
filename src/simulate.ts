/**
 * `simulate`: reads, page by page, every opportunity the scan would read over the next N days,
 * and replays the daemon's decisions on that data without sending or writing anything.
 */
import type { Db } from './db/database.ts';
import { loadSnapshots } from './db/snapshots.ts';
import { simulateUnits, type SimulationEvent, type SimulationUnit } from './journey/simulate.ts';
import { addDays, localDate, zonedTimeOrGapEnd } from './journey/time.ts';
import type { Journey } from './journey/types.ts';
import { snapshotNeeds } from './scan.ts';
import { DEFAULT_PAGE_SIZE, forEachScanPage } from './scan-pages.ts';

export interface SimulationDay {
  date: string;
  /** `dueAt`: the step's due time; `at`: when it would be sent (later when held by quiet hours or a cap). */
  sends: { opportunityId: number; stepId: string; dueAt: string; at: string; recipient: string }[];
  suppressions: { opportunityId: number; stepId: string; reason: string }[];
}

export interface Simulation {
  from: string;
  timeZone: string;
  days: SimulationDay[];
}

/**
 * The next `days` local days (in `defaults.timeZone`) from `from`: today (from `from` on) and the
 * days after, ending at local midnight, so `--days 1` is the rest of today.
 */
export async function runSimulation(db: Db, journey: Journey, from: Date, days: number, onProgress?: (read: number) => void): Promise<Simulation> {
  const zone = journey.defaults.timeZone;
  const to = zonedTimeOrGapEnd(addDays(localDate(from, zone), days), { hour: 0, minute: 0 }, zone);
  const units: SimulationUnit[] = [];
  await forEachScanPage(db, journey, from, { pageSize: DEFAULT_PAGE_SIZE, horizonDays: days }, async ({ rows, journey: sub }) => {
    const snapshots = await loadSnapshots(db, rows, snapshotNeeds(sub, from));
    for (const snapshot of snapshots) units.push({ snapshot, journey: sub });
    onProgress?.(units.length);
  });
  return groupByDay(simulateUnits(units, from, to), journey.defaults.timeZone, from, days);
}

/** Days in `defaults.timeZone`, from the day of `from`, every day listed even when empty. */
export function groupByDay(events: SimulationEvent[], zone: string, from: Date, days: number): Simulation {
  const first = localDate(from, zone);
  const out: SimulationDay[] = [];
  const byDate = new Map<string, SimulationDay>();
  for (let i = 0; i < days; i++) {
    const day: SimulationDay = { date: addDays(first, i), sends: [], suppressions: [] };
    out.push(day);
    byDate.set(day.date, day);
  }
  for (const e of [...events].sort((a, b) => a.at.getTime() - b.at.getTime() || a.opportunityId - b.opportunityId)) {
    const date = localDate(e.at, zone);
    let day = byDate.get(date);
    if (!day) {
      day = { date, sends: [], suppressions: [] };
      byDate.set(date, day);
      out.push(day);
    }
    if (e.kind === 'send') day.sends.push({ opportunityId: e.opportunityId, stepId: e.stepId, dueAt: e.dueAt.toISOString(), at: e.at.toISOString(), recipient: e.recipient });
    else day.suppressions.push({ opportunityId: e.opportunityId, stepId: e.stepId, reason: e.reason });
  }
  return { from: from.toISOString(), timeZone: zone, days: out };
}
