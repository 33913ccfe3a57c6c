/** Template folders written for one test and removed after it. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, expect } from 'vitest';
import { formatProblem, loadTemplates, type Templates } from '../../src/email/templates.ts';

/** Registers the clean-up in the calling file; `load` writes the files and expects them valid. */
export function templateFolders(prefix: string): { load(files: Record<string, string>): Templates } {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  });
  return {
    load(files) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), `nudge-${prefix}-`));
      dirs.push(dir);
      for (const [name, text] of Object.entries(files)) {
        fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
        fs.writeFileSync(path.join(dir, name), text);
      }
      const { templates, problems } = loadTemplates(dir);
      expect(problems.map(formatProblem)).toEqual([]);
      return templates;
    },
  };
}
