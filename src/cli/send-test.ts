import type { Command } from 'commander';
import { journeyRules } from '../content.ts';
import { loadSnapshot } from '../db/snapshots.ts';
import { publicUrlWarning } from '../email/lint.ts';
import type { SendOutcome } from '../email/mailer.ts';
import { prepareTestEmail } from '../email/test-email.ts';
import { checkTemplates, formatProblem, loadTemplates, templateWarnings, TemplateError, type Templates } from '../email/templates.ts';
import { loadJourneysFile } from '../journey/load-journeys.ts';
import { isValidEmail, normalizeEmail } from '../journey/recipients.ts';
import type { Step } from '../journey/types.ts';
import type { Runtime } from '../runtime.ts';
import { EXIT, parseId, UsageError, withRuntime } from './shared.ts';

interface Options {
  to: string;
  opportunity?: string;
  locale?: string;
}

export function registerSendTest(program: Command): void {
  program.command('send-test')
    .argument('<template>', 'the template name (closing-soon for templates/closing-soon.hbs)')
    .description('render a template with a real opportunity or the sample "Trip to the USA" and send ONE email, subject prefixed "[TEST] ", through the configured transport; nothing is recorded')
    .requiredOption('--to <address>', 'where the test goes')
    .option('--opportunity <id>', 'fill it with this opportunity and its primary contact (default: the sample)')
    .option('--locale <tag>', "render for this locale, e.g. de (default: the contact's, else en)")
    .action((template: string, opts: Options) => withRuntime((rt) => sendTest(rt, template, opts)));
}

async function sendTest(rt: Runtime, name: string, opts: Options): Promise<number> {
  const to = normalizeEmail(opts.to);
  if (!isValidEmail(to)) throw new UsageError(`--to: ${JSON.stringify(opts.to)} is not a valid email address`);
  const locale = opts.locale === undefined ? null : checkLocale(opts.locale);
  const { templates } = loadTemplates(rt.config.templatesDir);
  if (!templates.has(name)) throw new UsageError(unknownTemplate(templates, name));
  const { journey, problems: journeyProblems } = loadJourneysFile(rt.config.journeysFile, journeyRules(templates, null));
  if (!journey) console.error(`note: ${rt.config.journeysFile} has ${journeyProblems.length} problem(s) (see \`nudge templates check\`): sent as a customer email`);
  const step = journey?.steps.find((s) => s.template === name) ?? null;
  const snapshot = opts.opportunity === undefined ? null : await loadSnapshot(rt.db, parseId(opts.opportunity, '--opportunity'), { activities: false, sentSince: null });
  if (opts.opportunity !== undefined && !snapshot) throw new UsageError(`opportunity ${opts.opportunity} does not exist`);
  let prepared;
  try {
    prepared = prepareTestEmail(templates, { template: name, to, snapshot, step, defaults: journey?.defaults ?? null, locale, now: new Date() }, rt.config);
  } catch (error) {
    if (!(error instanceof TemplateError)) throw error;
    console.error(`nudge: the template cannot be rendered, nothing was sent:\n${error.message}`);
    return EXIT.invalid;
  }
  printFindings(templates, name, step, rt.config.publicUrl);
  for (const note of prepared.notes) console.error(`note: ${note}`);
  const mailer = rt.mailer();
  const outcome = await mailer.send(prepared.email);
  return report(outcome, { name, to, file: prepared.rendered.file, locale: prepared.locale, timeZone: prepared.timeZone, subject: prepared.email.subject, transport: mailer.transport });
}

function checkLocale(tag: string): string {
  try {
    const [canonical] = Intl.getCanonicalLocales(tag.trim().replace(/_/g, '-'));
    if (canonical) return canonical;
  } catch {
    // reported below
  }
  throw new UsageError(`--locale: ${JSON.stringify(tag)} is not a locale such as de or en-GB`);
}

function unknownTemplate(templates: Templates, name: string): string {
  const { problems } = loadTemplates(templates.dir);
  const own = problems.filter((p) => p.file === `${name}.hbs`);
  if (own.length) return `template "${name}" does not load:\n${own.map((p) => formatProblem(p)).join('\n')}`;
  return `template "${name}" not found in ${templates.dir} (available: ${templates.names().join(', ') || 'none'})`;
}

/** What `templates check` would say about this template: printed, the test is sent anyway. */
function printFindings(templates: Templates, name: string, step: Step | null, publicUrl: string): void {
  const usage = [{ template: name, stepId: step?.id ?? 'send-test', audience: step?.to.kind === 'owner' ? 'owner' as const : 'customer' as const }];
  const findings = [...checkTemplates(templates, usage), ...templateWarnings(templates, usage)];
  if (findings.length) console.error(`note: \`nudge templates check\` reports for ${name}:`);
  for (const p of findings) console.error(formatProblem(p));
  const warning = publicUrlWarning(publicUrl);
  if (warning) console.error(warning);
}

interface Sent {
  name: string;
  to: string;
  file: string;
  locale: string;
  timeZone: string;
  subject: string;
  transport: string;
}

function report(outcome: SendOutcome, s: Sent): number {
  switch (outcome.kind) {
    case 'accepted':
      console.log(`sent a test of ${s.name} (${s.file}, locale ${s.locale}, ${s.timeZone}) to ${s.to} via ${s.transport}: ${outcome.response}`);
      console.log(`subject: ${s.subject}`);
      console.log('nothing was recorded in deliveries');
      return EXIT.ok;
    case 'rejected':
      console.error(`nudge: the SMTP server refused the test email to ${s.to}: ${outcome.response}`);
      return EXIT.infrastructure;
    case 'unknown':
      console.error(`nudge: the connection was lost while sending the test email to ${s.to}; it may or may not arrive: ${outcome.reason}`);
      return EXIT.infrastructure;
    default:
      if (outcome.kind === 'deferred' && outcome.refusedAt) {
        console.error(`nudge: the SMTP server refused Nudge itself at ${outcome.refusedAt}, not this email: check SMTP_URL (login) and MAIL_FROM (sender): ${outcome.reason}`);
        return EXIT.infrastructure;
      }
      // deferred (4xx, connection refused, timeout) and anything else that is not a delivery.
      console.error(`nudge: the test email to ${s.to} was not sent: ${outcome.reason}`);
      return EXIT.infrastructure;
  }
}
