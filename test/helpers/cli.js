// The netloop command as a child process, for the CLI tests: its output gathered as it comes,
// its exit awaited.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** Starts `netloop ...args`: { p, out, err, code, exited } (out/err grow, code set at exit). */
export function runCli(args) {
  const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const r = { p, out: '', err: '', code: undefined };
  p.stdout.on('data', (d) => (r.out += d));
  p.stderr.on('data', (d) => (r.err += d));
  r.exited = new Promise((resolve) => p.on('exit', (code) => resolve((r.code = code))));
  return r;
}
