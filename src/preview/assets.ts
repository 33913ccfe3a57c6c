/**
 * The page's own style and script, inline (no CDN: the preview works offline and loads nothing
 * from elsewhere). The script only listens for reloads and swaps in the fresh view; the page
 * works without it, minus the live updates.
 */

export const STYLE = `
:root { font-family: system-ui, -apple-system, "Segoe UI", Arial, sans-serif; color: #1f2933; background: #f4f5f7; }
body { margin: 0; }
#current-opportunity, ul.choices, .notes, section h2 { overflow-wrap: anywhere; }
header { display: flex; gap: 16px; align-items: baseline; padding: 12px 20px; background: #1f2933; color: #fff; }
header h1 { font-size: 18px; margin: 0; }
#live-status { font-size: 13px; color: #9ae6b4; }
#live-status.down { color: #fbd38d; }
.layout { display: grid; grid-template-columns: 220px minmax(0, 1fr); gap: 20px; padding: 16px 20px; }
nav ul { list-style: none; padding: 0; margin: 0 0 20px; }
nav li { margin: 0 0 8px; }
nav small, .muted { color: #6b7280; }
nav a.current { font-weight: bold; }
h2 { font-size: 16px; margin: 20px 0 8px; }
h3 { font-size: 14px; margin: 16px 0 6px; }
section { background: #fff; border: 1px solid #e5e7eb; border-radius: 6px; padding: 12px 16px; margin: 0 0 16px; }
.problems { margin: 16px 20px 0; border-color: #f5c2c7; background: #fff5f5; }
.warnings { margin: 16px 20px 0; border-color: #f5e3a3; background: #fffbea; }
.warnings code { white-space: pre-wrap; color: #7a5b00; }
.problems code, .render-error code { white-space: pre-wrap; color: #9b1c1c; }
.ok { margin: 16px 20px 0; color: #276749; }
.notes li { color: #92400e; }
dl.fields { display: grid; grid-template-columns: max-content 1fr; gap: 4px 12px; margin: 0; }
dl.fields dt { color: #6b7280; }
dl.fields dd { margin: 0; }
.frames { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.frames figure { margin: 0; flex: none; }
.frames figcaption { font-size: 13px; color: #6b7280; margin-bottom: 4px; }
iframe { border: 1px solid #d1d5db; background: #fff; height: 640px; }
iframe.desktop { width: 800px; }
iframe.phone { width: 375px; }
pre.text { white-space: pre-wrap; background: #f9fafb; padding: 8px; border: 1px solid #e5e7eb; max-height: 360px; overflow: auto; }
table.headers td { padding: 2px 8px; vertical-align: top; font-family: ui-monospace, monospace; font-size: 13px; word-break: break-all; }
table.headers td:first-child { color: #6b7280; white-space: nowrap; }
form { margin: 8px 0; }
ul.choices { padding-left: 18px; }
table.calendar { border-collapse: collapse; width: 100%; table-layout: fixed; }
table.calendar th { font-size: 12px; color: #6b7280; }
table.calendar td { border: 1px solid #e5e7eb; vertical-align: top; height: 64px; padding: 4px; font-size: 12px; overflow: hidden; }
table.calendar td.empty { background: #f9fafb; }
table.calendar td.busy { background: #f0f7ff; }
.date { color: #6b7280; }
.send { color: #1d4ed8; }
.suppress { color: #9b1c1c; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
.chart { margin: 0; }
svg text { font-size: 12px; fill: #1f2933; }
svg text.currency { font-weight: bold; }
svg rect.amount, .legend.amount::before { fill: #93c5fd; background: #93c5fd; }
svg rect.expected, .legend.expected::before { fill: #1d4ed8; background: #1d4ed8; }
.legend::before { content: ""; display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 8px; }
`;

/** Swaps `#live` for a fresh copy from `/fragment` whenever the server says the files changed. */
export const SCRIPT = `
(() => {
  const status = document.getElementById('live-status');
  let refreshing = null;
  async function refresh() {
    const response = await fetch('/fragment' + location.search, { cache: 'no-store' });
    if (!response.ok) return;
    const template = document.createElement('template');
    template.innerHTML = await response.text();
    const fresh = template.content.getElementById('live');
    if (fresh) document.getElementById('live').replaceWith(fresh);
    bind();
  }
  function schedule() {
    refreshing = (refreshing || Promise.resolve()).then(refresh).catch(() => {});
  }
  function bind() {
    for (const select of document.querySelectorAll('select[data-autosubmit]')) {
      select.addEventListener('change', () => select.form.submit());
    }
  }
  bind();
  const events = new EventSource('/events');
  events.addEventListener('version', (event) => {
    status.textContent = 'live: updates when you save';
    status.classList.remove('down');
    const shown = document.getElementById('live').dataset.version;
    if (event.data !== shown) schedule();
  });
  events.addEventListener('error', () => {
    status.textContent = 'preview server not answering: retrying…';
    status.classList.add('down');
  });
})();
`;
