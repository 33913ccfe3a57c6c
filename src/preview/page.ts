/**
 * The preview page as HTML. `pageHtml` is the whole document; `liveHtml` is the part that is
 * rebuilt when a file changes (everything but the header and the script). Every value goes
 * through `html`, which escapes it; the email's own HTML only ever appears escaped inside a
 * sandboxed iframe's `srcdoc` attribute, where it runs no script and reaches nothing.
 */
import type { OutgoingEmail } from '../email/mailer.ts';
import type { Step } from '../journey/types.ts';
import { STYLE, SCRIPT } from './assets.ts';
import { calendarHtml, forecastHtml } from './charts.ts';
import type { EmailPreview } from './email.ts';
import { html, trusted, type Html } from './html.ts';
import type { View, ViewQuery } from './view.ts';

export function pageHtml(view: View, nonce: string): string {
  return html`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Nudge preview</title>
<style>${trusted(STYLE)}</style>
</head>
<body>
<header><h1>Nudge preview</h1><span id="live-status">connecting…</span></header>
${liveHtml(view)}
<script nonce="${nonce}">${trusted(SCRIPT)}</script>
</body>
</html>
`.text;
}

export function liveHtml(view: View): Html {
  return html`<div id="live" data-version="${view.content.version}">
${problemsHtml(view.content.problems)}
${warningsHtml(view.content.warnings)}
<div class="layout">
  <nav>${stepsHtml(view)}${templatesHtml(view)}</nav>
  <main>
    ${opportunityHtml(view)}
    ${view.email ? emailHtml(view, view.email) : html`<section id="email"><p>There is no template in ${view.content.templates.dir} yet.</p></section>`}
    <section id="calendar"><h2>Next 30 days (simulate)</h2>
      ${'value' in view.calendar ? calendarHtml(view.calendar.value) : html`<p class="muted">${view.calendar.missing}</p>`}</section>
    <section id="forecast"><h2>Forecast</h2>
      ${'value' in view.forecast ? forecastHtml(view.forecast.value) : html`<p class="muted">${view.forecast.missing}</p>`}</section>
  </main>
</div>
</div>`;
}

/** A link to this page with some of the state changed; `undefined` removes a key. */
function href(query: ViewQuery, changes: Partial<ViewQuery>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries({ ...query, ...changes })) if (value) params.set(key, value);
  const text = params.toString();
  return text ? `/?${text}` : '/';
}

function problemsHtml(problems: string[]): Html {
  if (problems.length === 0) return html`<p class="ok" id="problems-none">journeys.yaml and every template are valid.</p>`;
  return html`<section class="problems" id="problems" role="alert">
  <h2>${problems.length} problem${problems.length === 1 ? '' : 's'} in the journey file or templates</h2>
  <ul>${problems.map((p) => html`<li><code>${p}</code></li>`)}</ul>
  <p class="muted">The daemon keeps sending with the last good version until these are fixed; this page updates when you save.</p>
</section>`;
}

/** What `nudge templates check` warns of, which sends anyway. */
function warningsHtml(warnings: string[]): Html {
  if (warnings.length === 0) return html``;
  return html`<section class="warnings" id="warnings">
  <h2>${warnings.length} warning${warnings.length === 1 ? '' : 's'} (emails still go out)</h2>
  <ul>${warnings.map((w) => html`<li><code>${w}</code></li>`)}</ul>
</section>`;
}

function stepsHtml(view: View): Html {
  const journey = view.content.journey;
  const current = view.email?.selection.fromJourney ? view.email.selection.step.id : null;
  if (!journey) return html`<h2>Steps</h2><p class="muted" id="steps">journeys.yaml has a problem (see above).</p>`;
  return html`<h2>Steps <small class="muted">journeys.yaml</small></h2>
  <ul id="steps">${journey.steps.map((s) => html`<li data-step="${s.id}">
    <a class="${s.id === current ? 'current' : ''}" href="${href(view.query, { step: s.id, template: undefined })}">${s.id}</a><br>
    <small>${describeTrigger(s)} · to ${describeAudience(s)} · ${s.template}</small></li>`)}</ul>`;
}

function templatesHtml(view: View): Html {
  const { templates } = view.content;
  const current = view.email?.selection.template;
  return html`<h2>Templates</h2>
  <ul id="templates">${templates.names().map((name) => html`<li data-template="${name}">
    <a class="${name === current ? 'current' : ''}" href="${href(view.query, { template: name, step: undefined, locale: undefined })}">${name}</a>
    ${templates.has(name) ? '' : html` <small class="suppress">has a problem</small>`}</li>`)}</ul>`;
}

function describeTrigger(step: Step): string {
  const t = step.trigger;
  if (t.kind === 'stageEntered') return `${t.daysAfter} day${t.daysAfter === 1 ? '' : 's'} after entering ${t.stage}`;
  if (t.offsetDays === 0) return 'on the closing date';
  const n = Math.abs(t.offsetDays);
  return `${n} day${n === 1 ? '' : 's'} ${t.offsetDays < 0 ? 'before' : 'after'} the closing date`;
}

function describeAudience(step: Step): string {
  if (step.to.kind === 'role') return `contacts with role ${step.to.role}`;
  return step.to.kind === 'owner' ? 'the owner' : 'the primary contact';
}

const DATABASE_STATE: Record<View['database'], string> = {
  'connected': 'Opportunities from the database.',
  'not-configured': 'DATABASE_URL is not set: previewing with the built-in sample opportunity.',
  'unreachable': 'The database is not reachable: previewing with the built-in sample opportunity.',
};

function opportunityHtml(view: View): Html {
  const o = view.snapshot.opportunity;
  const q = view.query;
  return html`<section id="opportunity"><h2>Opportunity</h2>
  <p class="muted" id="database-state">${DATABASE_STATE[view.database]}</p>
  <p id="current-opportunity">${view.sample ? 'Sample: ' : `#${o.id} `}<strong>${o.title}</strong>
    · ${o.stage.label} (${o.stage.probability}%) · closes ${o.closingDate ?? 'no date'} · ${o.amount ?? 'no amount'} ${o.currency}</p>
  ${view.notes.length ? html`<ul class="notes">${view.notes.map((n) => html`<li>${n}</li>`)}</ul>` : ''}
  ${view.database === 'connected' ? html`<form method="get" action="/" id="search">
    ${hidden(q, ['step', 'template', 'locale', ...(q.opportunity === 'sample' ? [] : ['opportunity' as const])])}
    <label>Search by title or id <input type="search" name="q" value="${q.q ?? ''}" maxlength="200"></label>
    <button type="submit">Search</button>
  </form>
  <ul class="choices" id="choices">${view.choices.map((c) => html`<li><a href="${href(q, { opportunity: String(c.id) })}">#${c.id} ${c.title}</a>
    <small class="muted">${c.stage} · closes ${c.closingDate ?? 'no date'}</small></li>`)}
    ${view.moreChoices ? html`<li class="muted" id="more-choices">more match: type more of the title, or the id</li>` : ''}
    <li><a href="${href(q, { opportunity: 'sample', q: undefined })}">the built-in sample opportunity</a></li></ul>` : ''}
</section>`;
}

function hidden(query: ViewQuery, keys: (keyof ViewQuery)[]): Html[] {
  return keys.filter((k) => query[k]).map((k) => html`<input type="hidden" name="${k}" value="${query[k]}">`);
}

function emailHtml(view: View, preview: EmailPreview): Html {
  const { selection, recipient } = preview;
  return html`<section id="email"><h2>Email: ${selection.template}${selection.fromJourney ? html` <small class="muted">step ${selection.step.id}</small>` : ''}</h2>
  ${localeForm(view, preview)}
  ${preview.notes.length ? html`<ul class="notes">${preview.notes.map((n) => html`<li>${n}</li>`)}</ul>` : ''}
  ${'problem' in preview.result
    ? html`<div class="render-error" id="render-error" role="alert"><p>This email cannot be rendered:</p><code>${preview.result.problem}</code></div>`
    : renderedHtml(preview.result.rendered.file, preview.result.email, preview.result.rendered.preheader, preview.locale, recipient.timeZone)}
</section>`;
}

function localeForm(view: View, preview: EmailPreview): Html {
  const own = preview.recipient.locale;
  const choices = [...new Set(['en', ...view.locales, ...(view.query.locale ? [view.query.locale] : [])])];
  return html`<form method="get" action="/" id="locale-form">
    ${hidden(view.query, ['step', 'template', 'opportunity', 'q'])}
    <label>Locale <select name="locale" data-autosubmit>
      <option value=""${view.query.locale ? '' : trusted(' selected')}>the recipient's (${own})</option>
      ${choices.map((l) => html`<option value="${l}"${view.query.locale === l ? trusted(' selected') : ''}>${l}${hasVariant(view.locales, l) ? '' : ' (base file)'}</option>`)}
    </select></label>
    <noscript><button type="submit">Show</button></noscript>
  </form>`;
}

/** Whether `locale` picks a variant file: `de-AT` uses `de` when there is no `de-AT` (as templates.ts does). */
function hasVariant(variants: string[], locale: string): boolean {
  const tags = new Set(variants.map((v) => v.toLowerCase()));
  for (let tag = locale.toLowerCase(); tag; tag = tag.includes('-') ? tag.slice(0, tag.lastIndexOf('-')) : '') {
    if (tags.has(tag)) return true;
  }
  return false;
}

function renderedHtml(file: string, email: OutgoingEmail, preheader: string | null, locale: string, timeZone: string): Html {
  const headers: [string, string][] = [
    ['From', email.from], ['To', email.to || '(no address)'], ['Subject', email.subject], ['Message-ID', email.messageId],
    ...Object.entries(email.headers),
  ];
  return html`<dl class="fields">
    <dt>Subject</dt><dd id="subject">${email.subject}</dd>
    <dt>Preheader</dt><dd id="preheader">${preheader ?? '(none)'}</dd>
    <dt>Template file</dt><dd id="template-file">${file}</dd>
    <dt>Rendered for</dt><dd>locale ${locale}, time zone ${timeZone}</dd>
  </dl>
  <div class="frames">
    <figure><figcaption>Desktop · 800 px</figcaption>
      <iframe id="desktop" class="desktop" title="The email at desktop width" sandbox="" referrerpolicy="no-referrer" srcdoc="${email.html}"></iframe></figure>
    <figure><figcaption>Phone · 375 px</figcaption>
      <iframe id="phone" class="phone" title="The email at phone width" sandbox="" referrerpolicy="no-referrer" srcdoc="${email.html}"></iframe></figure>
  </div>
  <h3>Plain text</h3>
  <pre class="text" id="text">${email.text}</pre>
  <h3>Headers</h3>
  <table class="headers" id="headers">${headers.map(([name, value]) => html`<tr><td>${name}</td><td>${value}</td></tr>`)}</table>`;
}
