// What the numbers were measured on.
import { readFileSync } from 'node:fs';
import os from 'node:os';

function cpuModel() {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => /^model name\s*:/.test(l));
    if (line) return line.split(':').slice(1).join(':').trim();
  } catch {
    // not Linux: fall through
  }
  return os.cpus()[0]?.model ?? 'unknown';
}

export function machineInfo() {
  return {
    nproc: os.availableParallelism(),
    cpu: cpuModel(),
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    arch: process.arch,
    hostname: os.hostname(),
  };
}
