/**
 * Summarise a V8 .cpuprofile (from `node --cpu-prof`): self and inclusive time per function,
 * and self time per file, optionally only for samples inside a time window (µs on the profile's
 * clock, which is process.hrtime's).
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileRow {
  name: string;
  ms: number;
  pct: number;
}

export interface ProfileSummary {
  totalMs: number;
  self: ProfileRow[];
  inclusive: ProfileRow[];
  /** Inclusive time of the functions whose name matches `focus` (e.g. the SDK's own files). */
  focused: ProfileRow[];
  focus: string | undefined;
  files: ProfileRow[];
}

const shortUrl = (url: string): string => {
  if (!url) return '';
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('/node_modules/');
  if (nm !== -1) return u.slice(nm + '/node_modules/'.length);
  const m = /\/(sdk|proto|daemon|scripts)\/dist\/(.*)$/.exec(u);
  return m ? `${m[1]}/${m[2]}` : u;
};

const frameName = (n: ProfileNode): string => {
  const f = n.callFrame;
  const url = shortUrl(f.url);
  return url ? `${f.functionName || '(anonymous)'} ${url}:${f.lineNumber + 1}` : f.functionName || '(anonymous)';
};

const fileName = (n: ProfileNode): string => shortUrl(n.callFrame.url) || n.callFrame.functionName || '(native)';

export function summariseProfile(file: string, window?: [number, number], focus?: RegExp, top = 25): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) byId.set(n.id, n);
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  const files = new Map<string, number>();
  let total = 0;
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    // A sample stands for the time until the next one.
    const dt = p.timeDeltas[i + 1] ?? 0;
    if (window && (t < window[0] || t > window[1])) continue;
    const node = byId.get(p.samples[i]!);
    if (!node) continue;
    const name = frameName(node);
    if (name === '(idle)') continue;
    total += dt;
    self.set(name, (self.get(name) ?? 0) + dt);
    const f = fileName(node);
    files.set(f, (files.get(f) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const nm = frameName(byId.get(id)!);
      if (seen.has(nm)) continue;
      seen.add(nm);
      incl.set(nm, (incl.get(nm) ?? 0) + dt);
    }
  }
  const rows = (m: Map<string, number>, skip?: (k: string) => boolean): ProfileRow[] =>
    [...m]
      .filter(([k]) => !skip?.(k))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: us / 1000, pct: total ? (100 * us) / total : 0 }));
  return {
    totalMs: total / 1000,
    self: rows(self),
    inclusive: rows(incl, (k) => k === '(root)'),
    focused: focus ? rows(incl, (k) => !focus.test(k)) : [],
    focus: focus?.source,
    files: rows(files),
  };
}

export function formatProfile(s: ProfileSummary): string {
  const table = (title: string, rows: ProfileRow[]) =>
    [`${title}`, '| ms | % | function |', '|---:|---:|---|', ...rows.map((r) => `| ${r.ms.toFixed(1)} | ${r.pct.toFixed(1)} | \`${r.name}\` |`)].join('\n');
  return [
    `profiled CPU in the window: ${s.totalMs.toFixed(0)} ms (idle excluded)`,
    '',
    table('**self time by function**', s.self),
    '',
    table('**inclusive time by function**', s.inclusive),
    '',
    ...(s.focus ? [table(`**inclusive time, functions matching /${s.focus}/**`, s.focused), ''] : []),
    table('**self time by file**', s.files),
  ].join('\n');
}
