// Module hooks for `nudge` (registered by bin/nudge.js): three dependencies are loaded from their
// CommonJS builds instead of their ES module builds.
//
// Why: the sources run through tsx's module hooks, and with hooks registered, Node 20 sends every
// ES module it loads through them, a round trip to the hooks' thread of about 1.5 ms per file on
// a 2-core VM. kysely's ES module build is 263 files, nodemailer's 39, html-to-text's with its
// dependencies about 30: together 0.4 s of every command's start (2.17 s for `nudge --help`
// there, 1.77 s without them, medians of 9). A CommonJS build's own `require`s do not go through
// the hooks. Each package builds both from the same sources, and every import of a package in
// the process gets the same build, so there is one copy of each.
//
// The tests import the sources directly (vitest), so they run the ES module builds; the commands
// they spawn run these.
const COMMONJS = ['kysely', 'nodemailer', 'html-to-text'];

export async function resolve(specifier, context, nextResolve) {
  if (!COMMONJS.some((name) => specifier === name || specifier.startsWith(`${name}/`))) return nextResolve(specifier, context);
  return nextResolve(specifier, { ...context, conditions: context.conditions.map((c) => (c === 'import' ? 'require' : c)) });
}
