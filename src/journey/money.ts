/**
 * Exact decimal arithmetic for amounts (numeric(14,2) arrives as a string). Floating point never
 * touches money: amounts are scaled integers (BigInt), rounded half up to cents at the end.
 */
const SCALE = 6;
const FACTOR = 10n ** BigInt(SCALE);
const DECIMAL = /^(-?)(\d+)(?:\.(\d+))?$/;

/** Parses a decimal string into a scaled integer (6 decimals). Throws on anything else. */
export function parseDecimal(text: string): bigint {
  const m = DECIMAL.exec(text.trim());
  if (!m) throw new RangeError(`not a decimal number: ${JSON.stringify(text)}`);
  const fraction = (m[3] ?? '').padEnd(SCALE, '0');
  if (fraction.length > SCALE && /[^0]/.test(fraction.slice(SCALE))) {
    throw new RangeError(`more than ${SCALE} decimals: ${text}`);
  }
  const value = BigInt(m[2]!) * FACTOR + BigInt(fraction.slice(0, SCALE));
  return m[1] === '-' ? -value : value;
}


/**
 * Formats a scaled integer divided by `divisor` with 2 decimals, rounding half up (away from zero)
 * once, on the exact quotient: `formatCents(Σ amount × percent, 100n)` is the exact Σ of
 * amount × percent / 100, never a sum of rounded terms. @defaultValue divisor 1n
 */
export function formatCents(scaled: bigint, divisor = 1n): string {
  if (divisor <= 0n) throw new RangeError(`divisor must be positive, got ${divisor}`);
  const negative = scaled < 0n;
  const abs = negative ? -scaled : scaled;
  // Even (FACTOR / 100 is), so unit / 2 is exactly half a cent.
  const unit = (FACTOR / 100n) * divisor;
  const cents = (abs + unit / 2n) / unit;
  const text = `${cents / 100n}.${String(cents % 100n).padStart(2, '0')}`;
  return negative && cents !== 0n ? `-${text}` : text;
}

/** amount × probability / 100, exact, as a 2-decimal string. */
export function expectedRevenue(amount: string, probability: number): string {
  return formatCents((parseDecimal(amount) * BigInt(probability)) / 100n);
}


export function compareDecimals(a: string, b: string): number {
  const d = parseDecimal(a) - parseDecimal(b);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}
