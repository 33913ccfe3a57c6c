/**
 * The two pictures of the preview page: the `simulate` calendar (weeks of days, each day's sends
 * and suppressions per step) and the `forecast` as inline SVG bars, one chart per currency
 * (amounts in different currencies are never drawn on one scale).
 */
import { namedIds, type Forecast, type WindowFigures } from '../forecast.ts';
import { weekday } from '../journey/time.ts';
import type { Simulation, SimulationDay } from '../simulate.ts';
import { html, type Html } from './html.ts';

export function calendarHtml(s: Simulation): Html {
  if (s.days.length === 0) return html`<p>No days to show.</p>`;
  // Monday-first weeks; blank cells before the first day.
  const lead = (weekday(s.days[0]!.date) + 6) % 7;
  const cells: (SimulationDay | null)[] = [...Array.from({ length: lead }, () => null), ...s.days];
  const weeks: (SimulationDay | null)[][] = [];
  for (let i = 0; i < cells.length; i += 7) weeks.push(cells.slice(i, i + 7));
  const sends = s.days.reduce((n, d) => n + d.sends.length, 0);
  const suppressions = s.days.reduce((n, d) => n + d.suppressions.length, 0);
  return html`<p class="summary">${sends} sends and ${suppressions} suppressions over the next ${s.days.length} days
    (days in ${s.timeZone}; nothing is sent or written).</p>
  <table class="calendar">
    <thead><tr>${['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'].map((d) => html`<th>${d}</th>`)}</tr></thead>
    <tbody>${weeks.map((week) => html`<tr>${week.map(dayCell)}</tr>`)}</tbody>
  </table>`;
}

function dayCell(day: SimulationDay | null): Html {
  if (!day) return html`<td class="empty"></td>`;
  const sends = countBy(day.sends, (x) => x.stepId, (x) => x.opportunityId);
  const suppressed = countBy(day.suppressions, (x) => `${x.stepId}: ${x.reason}`, (x) => x.opportunityId);
  const busy = day.sends.length + day.suppressions.length > 0;
  return html`<td class="${busy ? 'day busy' : 'day'}" data-date="${day.date}">
    <div class="date">${day.date.slice(5)}</div>
    ${[...sends].map(([step, ids]) => html`<div class="send" title="${opportunities(ids)}">✉ ${step} ×${ids.length}</div>`)}
    ${[...suppressed].map(([what, ids]) => html`<div class="suppress" title="${opportunities(ids)}">⊘ ${what} ×${ids.length}</div>`)}
  </td>`;
}

function opportunities(ids: number[]): string {
  return `opportunities ${[...new Set(ids)].map((id) => `#${id}`).join(', ')}`;
}

function countBy<T>(items: readonly T[], key: (x: T) => string, id: (x: T) => number): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const item of items) out.set(key(item), [...(out.get(key(item)) ?? []), id(item)]);
  return out;
}

const BAR = { label: 44, width: 300, height: 14, gap: 4, row: 44 };

export function forecastHtml(f: Forecast): Html {
  const currencies = [...new Set(f.windows.map((w) => w.currency))];
  const stale = f.stale.map((s) => `${s.currency} ${s.opportunities} (amount ${s.amount}, expected ${s.expected})`);
  return html`<p class="summary">Open opportunities by closing date from ${f.asOf} (${f.timeZone}); windows are
    cumulative. <span class="legend amount">amount</span> <span class="legend expected">expected = amount × probability</span></p>
  ${currencies.length === 0 ? html`<p>No open opportunity closes in the next 3 months.</p>` : ''}
  <div class="charts">${currencies.map((c) => currencyChart(c, f.windows.filter((w) => w.currency === c)))}</div>
  <p>Stale (closing date passed, still open): ${stale.length ? stale.join('; ') : 'none'}. Without a closing date: ${f.noClosingDate}.</p>
  ${f.unreadableAmounts.opportunities > 0
    ? html`<p class="suppress" id="unreadable-amounts">Amount not a number (counted without amount): ${f.unreadableAmounts.opportunities} (opportunities ${namedIds(f.unreadableAmounts)}).</p>`
    : ''}`;
}

function currencyChart(currency: string, windows: WindowFigures[]): Html {
  const max = Math.max(...windows.map((w) => Number(w.amount)), 0) || 1;
  const scale = (value: string) => Math.max(1, Math.round((Number(value) / max) * BAR.width));
  const height = windows.length * BAR.row + 24;
  const rows = windows.map((w, i) => {
    const y = 24 + i * BAR.row;
    const note = w.withoutAmount ? `, ${w.withoutAmount} without amount` : '';
    return html`<g class="window" data-window="${w.window}">
      <text x="0" y="${y + BAR.height - 2}">${w.window}</text>
      <rect class="amount" x="${BAR.label}" y="${y}" width="${scale(w.amount)}" height="${BAR.height}"><title>${w.window}: amount ${w.amount} ${currency}</title></rect>
      <rect class="expected" x="${BAR.label}" y="${y + BAR.height + BAR.gap}" width="${scale(w.expected)}" height="${BAR.height}"><title>${w.window}: expected ${w.expected} ${currency}</title></rect>
      <text class="figure" x="${BAR.label + BAR.width + 8}" y="${y + BAR.height - 2}">${w.amount} (${w.opportunities} opp.${note})</text>
      <text class="figure" x="${BAR.label + BAR.width + 8}" y="${y + 2 * BAR.height + BAR.gap - 2}">${w.expected}</text>
    </g>`;
  });
  return html`<figure class="chart" data-currency="${currency}">
    <svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="${`Forecast in ${currency}`}" width="${BAR.label + BAR.width + 200}" height="${height}">
      <text class="currency" x="0" y="14">${currency}</text>
      ${rows}
    </svg>
  </figure>`;
}
