/**
 * Keeps the preview's content fresh: chokidar watches the templates folder and the journey file;
 * a burst of file events (an editor's save is often several) becomes one reload, and every
 * subscriber (each open page, through Server-Sent Events) hears about it once the new version is
 * in place. A broken file never throws here: its problems are part of the content.
 */
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { ContentSource } from '../content.ts';
import type { Stage } from '../journey/types.ts';
import type { Logger } from '../logger.ts';
import { loadPreviewContent, type PreviewContent } from './content.ts';

export interface ContentWatch {
  current(): PreviewContent;
  /** Calls `listener` after each reload; returns the unsubscribe function. */
  subscribe(listener: (content: PreviewContent) => void): () => void;
  close(): Promise<void>;
}

export interface WatchOptions {
  /** Quiet time after the last file event before reloading, in milliseconds. @defaultValue 120 */
  debounceMs?: number;
}

/** Loads the content, starts watching, and resolves once the watcher has read the folder. */
export async function watchContent(
  source: ContentSource, stages: () => Promise<readonly Stage[] | null>, logger: Logger, options: WatchOptions = {},
): Promise<ContentWatch> {
  let content = loadPreviewContent(source, await stages(), 1);
  const listeners = new Set<(content: PreviewContent) => void>();
  const reload = serialized(async () => {
    try {
      content = loadPreviewContent(source, await stages(), content.version + 1);
    } catch (err) {
      logger.error({ err: (err as Error).message }, 'reloading the templates failed; keeping the previous version');
      return;
    }
    logger.info({ version: content.version, problems: content.problems.length }, 'templates or journey file changed; reloaded');
    for (const listener of listeners) {
      try {
        listener(content);
      } catch (err) {
        logger.warn({ err: (err as Error).message }, 'a page could not be told about the reload');
      }
    }
  });
  const watcher = await startWatcher(source, debounce(reload, options.debounceMs ?? 120), logger);
  return {
    current: () => content,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close: () => watcher.close(),
  };
}

/**
 * Watches the folders that hold the templates folder and the journey file, and only those two
 * within them: a watch on a path itself ends when the path is removed, so a folder deleted and
 * put back, or a journey file replaced the way some editors save, was never seen again.
 */
async function startWatcher(source: ContentSource, onChange: () => void, logger: Logger): Promise<FSWatcher> {
  const templatesDir = path.resolve(source.templatesDir);
  const journeysFile = path.resolve(source.journeysFile);
  const roots = [...new Set([path.dirname(templatesDir), path.dirname(journeysFile)])];
  const wanted = (p: string) => {
    const full = path.resolve(p);
    return roots.includes(full) || full === journeysFile || full === templatesDir || full.startsWith(templatesDir + path.sep);
  };
  const watcher = watch(roots, { ignoreInitial: true, atomic: true, ignored: (p: string) => !wanted(p) });
  watcher.on('all', () => onChange());
  // A watch error (a folder removed, too many files) is logged; the last content stays on screen.
  watcher.on('error', (err) => logger.warn({ err: (err as Error).message }, 'file watching failed'));
  await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  return watcher;
}

function debounce(fn: () => void, ms: number): () => void {
  let timer: NodeJS.Timeout | null = null;
  return () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, ms);
  };
}

/** One run at a time; a call during a run schedules exactly one more run after it. */
function serialized(fn: () => Promise<void>): () => void {
  let running = false;
  let again = false;
  const run = (): void => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    void fn().finally(() => {
      running = false;
      if (again) {
        again = false;
        run();
      }
    });
  };
  return run;
}
