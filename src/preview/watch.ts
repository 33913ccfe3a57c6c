/**
 * Keeps the preview's content fresh: chokidar watches the templates folder and the journey file;
 * a burst of file events (an editor's save is often several) becomes one reload, and every
 * subscriber (each open page, through Server-Sent Events) hears about it once the new version is
 * in place. A broken file never throws here: its problems are part of the content.
 */
import { existsSync, watch as fsWatch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { watch } from 'chokidar';
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
 * chokidar watches the templates folder's files. A watch on a path ends when the path is removed,
 * so the folders that hold the templates folder and the journey file are watched too, by name
 * only (`fs.watch`: no listing, whatever else those folders hold): the journey file's every save
 * (in place, or replaced the way some editors save), and the templates folder put back after a
 * delete, which chokidar is then told to watch again.
 */
async function startWatcher(source: ContentSource, onChange: () => void, logger: Logger): Promise<{ close(): Promise<void> }> {
  const templatesDir = path.resolve(source.templatesDir);
  const journeysFile = path.resolve(source.journeysFile);
  const watcher = watch(templatesDir, { ignoreInitial: true, atomic: true });
  watcher.on('all', () => onChange());
  // A watch error (a folder removed, too many files) is logged; the last content stays on screen.
  const failed = (err: unknown) => logger.warn({ err: (err as Error).message }, 'file watching failed');
  watcher.on('error', failed);
  await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  const names = new Map<string, Set<string>>();
  for (const target of [templatesDir, journeysFile]) {
    const folder = path.dirname(target);
    names.set(folder, (names.get(folder) ?? new Set()).add(path.basename(target)));
  }
  const folders: FSWatcher[] = [];
  for (const [folder, wanted] of names) {
    try {
      folders.push(fsWatch(folder, (_event, name) => {
        if (name === null || !wanted.has(String(name))) return;
        if (path.join(folder, String(name)) === templatesDir && existsSync(templatesDir)) {
          void watcher.unwatch(templatesDir);
          watcher.add(templatesDir);
        }
        onChange();
      }).on('error', failed));
    } catch (err) {
      failed(err);
    }
  }
  return {
    async close() {
      for (const f of folders) f.close();
      await watcher.close();
    },
  };
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
