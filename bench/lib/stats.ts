/** Medians, percentiles, alternating runs, and the one table every measure ends up in. */

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/**
 * Runs baseline, subject, baseline, subject, … `pairs` times, so that whatever else the machine
 * does drifts over both alike. Each function returns its figure (a rate, a duration, bytes).
 */
export async function alternate(
  pairs: number, baseline: (i: number) => Promise<number>, subject: (i: number) => Promise<number>,
): Promise<{ baseline: number[]; subject: number[] }> {
  const out = { baseline: [] as number[], subject: [] as number[] };
  for (let i = 0; i < pairs; i++) {
    out.baseline.push(await baseline(i));
    out.subject.push(await subject(i));
  }
  return out;
}

export interface Goal {
  /** `>=`: the ratio must be at least `value`; `<=`: at most. */
  op: '>=' | '<=';
  value: number;
}

/** The order, which the results table follows. */
export const MEASURE_ORDER = ['scan', 'enqueue', 'tick', 'e2e', 'latency', 'memory', 'second', 'simulate'] as const;

export interface Measure {
  key: (typeof MEASURE_ORDER)[number];
  title: string;
  unit: string;
  subjectName: string;
  baselineName: string;
  subject: number[];
  baseline: number[];
  /** One per pair: how the subject compares with the baseline of the same pair. */
  ratios: number[];
  goal: Goal | null;
  /** Conditions besides the ratio (e.g. "0 new jobs"); all must hold for the goal to be met. */
  extra?: { text: string; ok: boolean }[];
  notes?: string[];
}

export function ratioOf(m: Measure): number {
  return median(m.ratios);
}

export function goalText(m: Measure): string {
  const parts = m.goal ? [`${m.goal.op} ${m.goal.value}`] : [];
  for (const e of m.extra ?? []) parts.push(e.text);
  return parts.join(', ') || '(figure only)';
}

export function met(m: Measure): boolean | null {
  if (!m.goal && !m.extra?.length) return null;
  const r = ratioOf(m);
  const ratioOk = !m.goal || (m.goal.op === '>=' ? r >= m.goal.value : r <= m.goal.value);
  return ratioOk && (m.extra ?? []).every((e) => e.ok);
}

export function fmt(x: number, digits = 3): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toLocaleString('en-US');
  if (a >= 100) return x.toFixed(1);
  if (a >= 10) return x.toFixed(2);
  return x.toPrecision(digits);
}

/** The measure's lines: its figures per pair, then the medians. */
export function describe(m: Measure): string {
  const lines = [`## ${m.title}`];
  m.subject.forEach((s, i) => {
    lines.push(`  pair ${i + 1}: ${m.baselineName} ${fmt(m.baseline[i]!)} ${m.unit}, ${m.subjectName} ${fmt(s)} ${m.unit}, ratio ${fmt(m.ratios[i]!)}`);
  });
  const verdict = met(m);
  lines.push(`  median: ${m.baselineName} ${fmt(median(m.baseline))} ${m.unit}, ${m.subjectName} ${fmt(median(m.subject))} ${m.unit}; ratio ${fmt(ratioOf(m))} (goal ${goalText(m)}) ${verdict === null ? '' : verdict ? 'MET' : 'MISSED'}`);
  for (const e of m.extra ?? []) lines.push(`  ${e.ok ? 'ok' : 'NOT MET'}: ${e.text}`);
  for (const n of m.notes ?? []) lines.push(`  note: ${n}`);
  return lines.join('\n');
}

export function table(measures: readonly Measure[], pairs: number): string {
  const rows = [
    `| measure | subject (median) | baseline (median) | ratio (median of ${pairs} pairs) | goal | result |`,
    '|---|---|---|---|---|---|',
  ];
  const sorted = [...measures].sort((a, b) => MEASURE_ORDER.indexOf(a.key) - MEASURE_ORDER.indexOf(b.key));
  for (const m of sorted) {
    const verdict = met(m);
    rows.push(`| ${m.title} | ${fmt(median(m.subject))} ${m.unit} | ${fmt(median(m.baseline))} ${m.unit} | ${fmt(ratioOf(m))} | ${goalText(m)} | ${verdict === null ? '—' : verdict ? 'met' : '**missed**'} |`);
  }
  return rows.join('\n');
}
