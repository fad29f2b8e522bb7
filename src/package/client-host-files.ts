import { STATE_FILES } from '../roles/client/client-state.js';
import { PACKAGED_CONFIG_PATH } from '../roles/client/packaged-config.js';

/** Where the packaged client keeps its keys, enrollment and spool (`--state` default, CLI.md). */
export const CLIENT_STATE_DIR = '/var/lib/pofr';
export const CLIENT_UNIT = 'pofr-client.service';

/**
 * The systemd unit. The recorder runs as root (it reads every process's /proc entries and, where
 * the kernel allows, tracefs) but writes only its state directory; everything else is read-only or
 * hidden from it. Left out on purpose: ProtectKernelTunables (would make /sys/kernel/tracing
 * read-only), MemoryDenyWriteExecute (V8 compiles code), CapabilityBoundingSet (reading other
 * processes' fd tables needs ptrace-level access, tracefs needs root's). A private /tmp or /dev
 * does not change the paths it records: the kernel names a process's files from that process's
 * mounts. ExecStartPre enrolls once the server is reachable, so a host installed while the server
 * is down starts recording by itself later.
 */
export function clientUnit(exe: string): string {
  return `[Unit]
Description=pofr forensic flight recorder (client)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStartPre=${exe} enroll --if-needed --state ${CLIENT_STATE_DIR}
ExecStart=${exe} run --state ${CLIENT_STATE_DIR}
Restart=on-failure
RestartSec=10s
# On SIGTERM the recorder seals what it holds and tries to deliver it before it exits.
KillMode=mixed
TimeoutStopSec=30s
UMask=0077
StateDirectory=pofr
StateDirectoryMode=0700
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=${CLIENT_STATE_DIR}
ProtectHome=read-only
PrivateTmp=yes
ProtectClock=yes
ProtectHostname=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK

[Install]
WantedBy=multi-user.target
`;
}

/** The client's own files in the state directory, for purge (the executable is gone by then). */
export function clientStateNames(): string[] {
  return [...Object.values(STATE_FILES), `${STATE_FILES.sshKey}.pub`];
}

/**
 * Shell functions shared by the .deb's maintainer scripts and the tarball's install script:
 * systemd when it runs (pid 1 is systemd), else the client's own daemon (`pofr-client start`).
 */
function shellFunctions(exe: string, unitDir: string): string {
  return `STATE=${CLIENT_STATE_DIR}
EXE=${exe}
has_systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }
enroll_and_start() {
  mkdir -p "$STATE" && chmod 0700 "$STATE"
  if has_systemd; then
    systemctl daemon-reload || true
    systemctl enable ${CLIENT_UNIT} >/dev/null 2>&1 || true
  fi
  if "$EXE" enroll --if-needed --state "$STATE"; then
    if has_systemd; then
      systemctl start ${CLIENT_UNIT}
    else
      "$EXE" start --state "$STATE"
    fi
    if grep -q '"status": "pending"' "$STATE/${STATE_FILES.enrollment}" 2>/dev/null; then
      echo "pofr-client: recording; the server holds this host as pending until: pofr server approve $(hostname)" >&2
    fi
  else
    echo "pofr-client: installed but not enrolled (see above). Enroll with: $EXE enroll --token TOKEN" >&2
    if has_systemd; then
      echo "pofr-client: then: systemctl start ${CLIENT_UNIT}" >&2
    else
      echo "pofr-client: then: $EXE start" >&2
    fi
  fi
}
stop_recorder() {
  if has_systemd; then
    systemctl stop ${CLIENT_UNIT} 2>/dev/null || true
  fi
  if [ -x "$EXE" ] && [ -f "$STATE/${STATE_FILES.pid}" ]; then
    "$EXE" stop --wait --state "$STATE" 2>/dev/null || true
  fi
}
purge_state() {
  for f in ${clientStateNames().join(' ')}; do rm -rf "$STATE/$f" "$STATE/$f.tmp"; done
  rmdir "$STATE" 2>/dev/null || true
}
UNIT_DIR=${unitDir}
`;
}

/** postinst, prerm and postrm of the host .deb. */
export function clientDebScripts(exe: string): { postinst: string; prerm: string; postrm: string } {
  const head = `#!/bin/sh\nset -e\n${shellFunctions(exe, '/lib/systemd/system')}`;
  return {
    postinst: `${head}
case "$1" in
  configure) enroll_and_start ;;
esac
exit 0
`,
    prerm: `${head}
case "$1" in
  remove|upgrade|deconfigure)
    stop_recorder
    if [ "$1" = remove ] && has_systemd; then systemctl disable ${CLIENT_UNIT} >/dev/null 2>&1 || true; fi
    ;;
esac
exit 0
`,
    postrm: `${head}
case "$1" in
  purge)
    purge_state
    rmdir /etc/pofr 2>/dev/null || true
    ;;
esac
if has_systemd; then systemctl daemon-reload || true; fi
exit 0
`,
  };
}

/** install.sh and uninstall.sh of the tarball, for distributions without dpkg. */
export function clientTarballScripts(exe: string): { install: string; uninstall: string } {
  const head = `#!/bin/sh\nset -e\n${shellFunctions(exe, '/etc/systemd/system')}`;
  return {
    install: `${head}
# Run as root from the unpacked folder: installs the executable, its configuration and (with
# systemd) its unit, then enrolls and starts the recorder.
cd "$(dirname "$0")"
[ "$(id -u)" = 0 ] || { echo "install.sh: run it as root" >&2; exit 1; }
stop_recorder
install -D -m 0700 pofr-client "$EXE"
if [ ! -e ${PACKAGED_CONFIG_PATH} ]; then install -D -m 0600 client.json ${PACKAGED_CONFIG_PATH}; fi
if has_systemd; then install -D -m 0644 ${CLIENT_UNIT} "$UNIT_DIR/${CLIENT_UNIT}"; fi
enroll_and_start
`,
    uninstall: `${head}
# Stops the recorder and removes what install.sh installed; --purge also deletes keys, enrollment
# and unsent spool (what dpkg --purge does).
[ "$(id -u)" = 0 ] || { echo "uninstall.sh: run it as root" >&2; exit 1; }
stop_recorder
if has_systemd; then systemctl disable ${CLIENT_UNIT} >/dev/null 2>&1 || true; rm -f "$UNIT_DIR/${CLIENT_UNIT}"; systemctl daemon-reload || true; fi
rm -f "$EXE"
if [ "\${1:-}" = --purge ]; then
  purge_state
  rm -f ${PACKAGED_CONFIG_PATH}
  rmdir /etc/pofr 2>/dev/null || true
fi
`,
  };
}
