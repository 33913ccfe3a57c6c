/** Progress of long commands on stderr: rewritten in place on a terminal, a line now and then elsewhere. */
import { describe, expect, it } from 'vitest';
import { progressOnStderr } from '../src/cli/progress.ts';

function stream(isTTY: boolean) {
  const written: string[] = [];
  return { isTTY, written, write: (text: string) => written.push(text) > 0 };
}

describe('progressOnStderr', () => {
  it('on a terminal, rewrites one line at each update and ends it when done', () => {
    const s = stream(true);
    const p = progressOnStderr(s, 5_000, () => 0);
    p.update('read 1000 opportunities');
    p.update('read 2000 opportunities');
    p.done();
    expect(s.written).toEqual(['\rread 1000 opportunities…', '\rread 2000 opportunities…', '\n']);
  });

  it('elsewhere, says nothing for a short run, then a line of its own every interval', () => {
    const s = stream(false);
    let t = 1_000_000;
    const p = progressOnStderr(s, 5_000, () => t);
    for (const [ms, n] of [[1_000, 1], [3_999, 2], [5_000, 3], [9_999, 4], [10_000, 5], [16_000, 6]] as const) {
      t = 1_000_000 + ms;
      p.update(`written ${n}`);
    }
    p.done();
    expect(s.written).toEqual(['written 3…\n', 'written 5…\n', 'written 6…\n']);
  });

  it('a terminal that saw nothing gets no empty line', () => {
    const s = stream(true);
    progressOnStderr(s).done();
    expect(s.written).toEqual([]);
  });
});
