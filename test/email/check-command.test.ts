/**
 * `nudge templates check` as a marketer (or CI) runs it: a separate process, one line per
 * problem as `file:line:column: message (fix: hint)`, exit code 1 on any error and 0 when there
 * are only warnings. No database: stage names are then not checked, which it says.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runNudge } from '../helpers/cli.ts';
import { PG_ADMIN_URL } from '../helpers/env.ts';

const JOURNEY = `defaults:
  timeZone: UTC
steps:
  - id: reminder
    template: reminder
    trigger: { closingDate: { daysBefore: 3 } }
  - id: follow-up
    template: follow-up
    trigger: { stageEntered: { stage: proposal, daysAfter: 2 } }
  - id: nag-owner
    to: owner
    template: owner-note
    trigger: { closingDate: { daysAfter: 1 } }
`;

const GOOD = {
  'journeys.yaml': JOURNEY,
  'reminder.hbs': '---\nsubject: "Your request {{reference}}"\n---\n<p>Hello</p>\n<p><a href="{{unsubscribeUrl}}">Unsubscribe</a></p>\n',
  'reminder.de.hbs': '---\nsubject: "Ihre Anfrage {{reference}}"\n---\n<p>Hallo</p>\n',
  'follow-up.hbs': '---\nsubject: "About {{reference}}"\n---\n<p>Any questions?</p>\n',
  'follow-up.de.hbs': '---\nsubject: "Zu {{reference}}"\n---\n<p>Fragen?</p>\n',
  'owner-note.hbs': '---\nsubject: Update the closing date\n---\n<p>#{{opportunity.id}} <img src="https://crm.example.com/badge.png"></p>\n',
};

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** A templates folder with `files`; a file given as undefined is left out. */
function folder(files: Record<string, string | undefined>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nudge-check-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) if (text !== undefined) fs.writeFileSync(path.join(dir, name), text);
  return dir;
}

function check(files: Record<string, string | undefined>, env: Record<string, string | undefined> = {}) {
  const dir = folder(files);
  return runNudge(['templates', 'check'], {
    DATABASE_URL: undefined, NUDGE_JOURNEYS: undefined, NUDGE_TEMPLATES_DIR: dir, PUBLIC_URL: 'https://nudge.example.com', ...env,
  }, dir);
}

const NO_DATABASE = 'note: stage names in journeys.yaml are not checked: DATABASE_URL is not set\n';

describe('nudge templates check', () => {
  it('warnings only: printed, exit code 0', async () => {
    const r = await check(GOOD);
    expect(r.stdout.split('\n')).toEqual([
      'owner-note.hbs:4:24: warning: <img> without alt text: many mail programs block images, and screen readers read alt (fix: add alt="what the image shows" (alt="" for a decorative image))',
      'ok: 3 steps, 3 templates, 1 warning',
      '',
    ]);
    expect(r.stderr).toBe(NO_DATABASE);
    expect(r.code).toBe(0);
  });

  it('errors: every problem with its place and a fix, exit code 1', async () => {
    const r = await check({
      ...GOOD,
      'follow-up.hbs': '---\nsubject: A quick question\n---\n<p>Did our proposal <a href="http://acme.example/proposal">arrive</a>?</p>\n',
      'follow-up.de.hbs': undefined,
    });
    expect(r.stdout.split('\n')).toEqual([
      "follow-up.hbs:2:10: the subject of a customer email does not name the request (fix: put {{reference}}, the customer's own title for the request, in the subject)",
      'follow-up.hbs:4:24: link "http://acme.example/proposal" is not https (fix: write https://acme.example/proposal)',
      'owner-note.hbs:4:24: warning: <img> without alt text: many mail programs block images, and screen readers read alt (fix: add alt="what the image shows" (alt="" for a decorative image))',
      'follow-up.hbs:1:1: warning: no German variant: contacts with locale "de" get follow-up.hbs, though reminder.de.hbs exists (fix: add follow-up.de.hbs)',
      '',
    ]);
    expect(r.stderr).toBe(`${NO_DATABASE}2 errors, 2 warnings\n`);
    expect(r.code).toBe(1);
  });

  it('one run reports every file: a template that does not compile is not "not found", and the others are still checked', async () => {
    const r = await check({
      ...GOOD,
      'reminder.hbs': '---\nsubject: "Your request {{reference}}"\n---\n<p>Hello</p>\n{{#each foo}}\n<p><a href="{{unsubscribeUrl}}">Unsubscribe</a></p>\n',
      'follow-up.hbs': '---\nsubject: "About {{reference}}"\n---\n<p>Any questions?</p>\n{{> footr}}\n',
      'owner-note.hbs': '---\nsubject: Update the closing date\n---\n<p>#{{opportunity.id}} <a href="http://crm.example.com">CRM</a></p>\n',
    });
    expect(r.stdout.split('\n')).toEqual([
      'reminder.hbs:5:1: syntax error: {{#each}} is not closed before the template ends (fix: close it with {{/each}})',
      'follow-up.hbs:5:1: unknown partial "footr" (fix: create partials/footr.hbs or correct the name)',
      'owner-note.hbs:4:27: link "http://crm.example.com" is not https (fix: write https://crm.example.com)',
      '',
    ]);
    expect(r.stdout).not.toContain('not found');
    expect(r.stderr).toBe(`${NO_DATABASE}3 errors\n`);
    expect(r.code).toBe(1);
  });

  it('with DATABASE_URL set, a database it cannot read is named with the reason, and the templates are still checked', async () => {
    const closed = await check(GOOD, { DATABASE_URL: 'postgres://root@127.0.0.1:1/nudge' });
    expect(closed.stderr).toMatch(/^note: stage names in journeys\.yaml are not checked: the database at DATABASE_URL cannot be read: .*ECONNREFUSED/);
    expect(closed.stdout).toContain('ok: 3 steps, 3 templates, 1 warning');
    expect(closed.code).toBe(0);
    // A server's own database, without Nudge's schema.
    const bare = await check(GOOD, { DATABASE_URL: PG_ADMIN_URL });
    expect(bare.stderr).toMatch(/^note: stage names in journeys\.yaml are not checked: the database at DATABASE_URL cannot be read \(run `nudge migrate`\): relation "stages" does not exist/);
    expect(bare.code).toBe(0);
  });

  it('with DATABASE_URL set, the configuration is checked as for any command: a bad variable stops it, named', async () => {
    const r = await check(GOOD, { DATABASE_URL: 'postgres://root@127.0.0.1:1/nudge', LOG_LEVEL: 'loud' });
    expect(r.stderr).toMatch(/^nudge: configuration error: LOG_LEVEL: /);
    expect(r.stdout).toBe('');
    expect(r.code).toBe(2);
  });

  it.each([
    ['http://nudge.example.com', 'warning: PUBLIC_URL is http://nudge.example.com: '],
    [undefined, 'warning: PUBLIC_URL is not set (unsubscribe links use http://localhost:3000): '],
  ])('PUBLIC_URL=%s is a warning: List-Unsubscribe must be https', async (url, start) => {
    const r = await check({ ...GOOD, 'owner-note.hbs': '---\nsubject: Update the closing date\n---\n<p>#{{opportunity.id}}</p>\n' }, { PUBLIC_URL: url, PORT: undefined });
    const lines = r.stdout.split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]!.startsWith(start)).toBe(true);
    expect(lines[0]).toContain('(fix: set PUBLIC_URL to the https:// address customers reach Nudge at)');
    expect(lines[1]).toBe('ok: 3 steps, 3 templates, 1 warning');
    expect(r.code).toBe(0);
  });
});
