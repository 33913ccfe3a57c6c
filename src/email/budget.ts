/**
 * Limits of one render, because templates are semi-trusted: a template that loops (nested
 * `{{#each}}`), fans out (partials including partials) or recurses (a partial including itself)
 * is stopped with an error that names the file and line, instead of holding a worker or
 * exhausting its memory.
 *
 * Why hooks instead of a `node:vm` timeout: Handlebars renders synchronously, so a time limit
 * has to be checked from inside the render. A vm `timeout` would interrupt the render, but only
 * on time: a render can build hundreds of megabytes of string well within a second, and the vm
 * boundary does nothing for memory. Every unbounded piece of work in a template passes through
 * two places, so they are where the budget is checked:
 * - `{{#each}}` iterations (the only loop; `{{#list}}...{{/list}}` over an array also calls it);
 * - partial invocations, registered or inline (`VM.invokePartial`), which is where fan-out and
 *   recursion happen.
 * Between two checks the work is bounded by the size of the template and of the data, so
 * checking elapsed time, output size and a count at each one bounds the whole render. The checks
 * are deterministic (a count and a size) except the time limit, which is the backstop.
 */
import type { HandlebarsEnv } from './helpers.ts';

export interface RenderLimits {
  /** Largest rendered HTML, in bytes of UTF-8 (Gmail already clips at 102 KB). @defaultValue 1048576 (1 MiB) */
  maxHtmlBytes: number;
  /**
   * Milliseconds of CPU time one email may take to render (CPU, not wall-clock time: a busy
   * machine must not fail a normal email, whose render takes a few milliseconds). @defaultValue 2000
   */
  maxMs: number;
  /** `{{#each}}` iterations and partial calls of one email, together. @defaultValue 100000 */
  maxSteps: number;
  /** Partials inside partials. @defaultValue 16 */
  maxPartialDepth: number;
}

export const DEFAULT_LIMITS: Readonly<RenderLimits> = Object.freeze({
  maxHtmlBytes: 1024 * 1024, maxMs: 2000, maxSteps: 100_000, maxPartialDepth: 16,
});

/** Thrown by a check; `lineNumber`/`column` (Handlebars' names) locate it in the current part. */
export class BudgetExceeded extends Error {
  override readonly name = 'BudgetExceeded';
  lineNumber?: number;
  column?: number;
  /** The partial being called when it was thrown (partial calls carry no position). */
  partial?: string;
  constructor(message: string, readonly hint: string, loc: HelperLoc | undefined) {
    super(message);
    if (loc) {
      this.lineNumber = loc.start.line;
      this.column = loc.start.column;
    }
  }
}

interface HelperLoc {
  start: { line: number; column: number };
}

/** CPU time of this process, in microseconds. */
function cpuMicros(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

/** Reading the CPU clock is a system call: once every this many steps is plenty. */
const CLOCK_EVERY = 16;

class RenderBudget {
  private readonly deadline: number;
  private steps = 0;
  /** Characters produced so far by loop bodies and partials (a lower bound of the output). */
  produced = 0;
  depth = 0;

  constructor(readonly limits: RenderLimits) {
    this.deadline = cpuMicros() + limits.maxMs * 1000;
  }

  step(loc: HelperLoc | undefined): void {
    this.steps += 1;
    if (this.steps > this.limits.maxSteps) {
      throw new BudgetExceeded(`the email needs more than ${this.limits.maxSteps} loop iterations and partial calls`, 'a {{#each}} inside {{#each}} or a partial that includes partials multiplies: flatten it', loc);
    }
    if (this.steps % CLOCK_EVERY === 0 && cpuMicros() > this.deadline) {
      throw new BudgetExceeded(`the email took more than ${this.limits.maxMs} ms of CPU time to render`, 'remove nested {{#each}} blocks or partials that include each other', loc);
    }
  }

  /**
   * `out` was produced since `mark` (the `produced` before the body ran). Setting rather than
   * adding counts nested loops and partials once: their output is part of `out`.
   */
  produce(mark: number, out: number, loc: HelperLoc | undefined): void {
    this.produced = mark + out;
    // Characters are at most as many as UTF-8 bytes: this stops a runaway early; the exact
    // byte count of the final HTML is checked by `checkHtmlSize`.
    if (this.produced > this.limits.maxHtmlBytes) throw tooLarge(this.limits, loc);
  }
}

function tooLarge(limits: RenderLimits, loc?: HelperLoc): BudgetExceeded {
  return new BudgetExceeded(`the email is larger than ${limits.maxHtmlBytes} bytes`, 'an email this large is clipped or refused by mail programs: shorten it or loop over less', loc);
}

/** Rendering is synchronous, so "the render in progress" is safely one module-level slot. */
let active: RenderBudget | null = null;

/** Runs `render` under `limits`; a render already under a budget keeps its own. */
export function withBudget<T>(limits: RenderLimits, render: () => T): T {
  if (active) return render();
  active = new RenderBudget(limits);
  try {
    return render();
  } finally {
    active = null;
  }
}

export function checkHtmlSize(html: string, limits: RenderLimits): void {
  if (html.length > limits.maxHtmlBytes || Buffer.byteLength(html) > limits.maxHtmlBytes) throw tooLarge(limits);
}

type Helper = (this: unknown, ...args: unknown[]) => unknown;
type BlockFn = ((context: unknown, options?: unknown) => string) & Record<string, unknown>;
type PartialInvoker = (this: unknown, partial: unknown, context: unknown, options: { name?: string; loc?: HelperLoc }) => unknown;

/** Puts the checks into `{{#each}}` and every partial call of this environment (not others). */
export function installBudget(hb: HandlebarsEnv): void {
  const each = hb.helpers.each as Helper;
  hb.registerHelper('each', function budgetedEach(this: unknown, context: unknown, options: { fn: BlockFn; loc?: HelperLoc }) {
    const fn = options.fn;
    const counted = Object.assign((ctx: unknown, opts?: unknown) => {
      const budget = active;
      if (!budget) return fn(ctx, opts);
      budget.step(options.loc);
      const mark = budget.produced;
      const out = fn(ctx, opts);
      budget.produce(mark, out.length, options.loc);
      return out;
    }, fn);
    return each.call(this, context, { ...options, fn: counted });
  });
  // `VM` is Handlebars' runtime, shared by every environment: this one gets a copy of its own,
  // which `template()` reads as `env.VM.invokePartial` for registered, inline and block partials.
  const vm = hb.VM as unknown as Record<string, unknown> & { invokePartial: PartialInvoker };
  const invoke = vm.invokePartial;
  (hb as { VM: unknown }).VM = {
    ...vm,
    invokePartial(this: unknown, partial: unknown, context: unknown, options: { name?: string; loc?: HelperLoc }) {
      const budget = active;
      if (!budget) return invoke.call(this, partial, context, options);
      const name = options.name ?? '?';
      const at = (error: unknown) => Object.assign(error as BudgetExceeded, { partial: (error as BudgetExceeded).partial ?? name });
      try {
        budget.step(options.loc);
      } catch (error) {
        throw at(error);
      }
      if (budget.depth >= budget.limits.maxPartialDepth) {
        throw at(new BudgetExceeded(`partials nested more than ${budget.limits.maxPartialDepth} deep at "${name}"`, `a partial must not include itself, directly or through another partial ("${name}")`, options.loc));
      }
      budget.depth += 1;
      const mark = budget.produced;
      try {
        const out = invoke.call(this, partial, context, options);
        if (typeof out === 'string') budget.produce(mark, out.length, options.loc);
        return out;
      } catch (error) {
        throw error instanceof BudgetExceeded && error.lineNumber === undefined ? at(error) : error;
      } finally {
        budget.depth -= 1;
      }
    },
  };
}
