/**
 * Progress of a long command on stderr (stdout keeps the results scripts read). On a terminal,
 * one line rewritten in place; elsewhere (a pipe, a CI log, `docker logs`) a line of its own, only
 * once the command has run for a while and then every so often, so that short runs print nothing
 * and long ones show they are alive.
 */

/** Milliseconds before the first line, and between lines, when stderr is not a terminal. */
export const PROGRESS_EVERY_MS = 5_000;

export interface Progress {
  /** What has been done so far (`read 12000 opportunities`); printed now or later, as above. */
  update(text: string): void;
  /** Ends the line rewritten on a terminal. */
  done(): void;
}

export function progressOnStderr(
  stream: Pick<NodeJS.WriteStream, 'write' | 'isTTY'> = process.stderr, everyMs = PROGRESS_EVERY_MS, now: () => number = Date.now,
): Progress {
  let printedAt = now();
  let printed = false;
  return {
    update(text) {
      if (stream.isTTY) {
        stream.write(`\r${text}…`);
        printed = true;
      } else if (now() - printedAt >= everyMs) {
        stream.write(`${text}…\n`);
        printedAt = now();
      }
    },
    done() {
      if (stream.isTTY && printed) stream.write('\n');
    },
  };
}
