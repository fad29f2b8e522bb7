/** Where the server package keeps its store and host key, owned by the `pofr` system user. */
export const SERVER_DATA_DIR = '/var/lib/pofr-server';
export const SERVER_USER = 'pofr';
export const SERVER_UNIT = 'pofr-server.service';
export const SERVER_DEFAULTS = '/etc/default/pofr-server';

/**
 * The server's unit: an unprivileged user, no capabilities (2222 is not a privileged port), a
 * read-only system but its data directory. MemoryDenyWriteExecute stays off: V8 compiles code.
 */
export function serverUnit(): string {
  return `[Unit]
Description=pofr server (SSH ingest and store)
After=network-online.target postgresql.service
Wants=network-online.target

[Service]
Type=simple
User=${SERVER_USER}
Group=${SERVER_USER}
EnvironmentFile=-${SERVER_DEFAULTS}
ExecStart=/usr/bin/pofr server run --data ${SERVER_DATA_DIR} $POFR_SERVER_ARGS
Restart=on-failure
RestartSec=5s
TimeoutStopSec=60s
UMask=0077
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ReadWritePaths=${SERVER_DATA_DIR}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectClock=yes
ProtectHostname=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectProc=invisible
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6

[Install]
WantedBy=multi-user.target
`;
}

export function serverDefaults(): string {
  return `# Options of \`pofr server run\` for ${SERVER_UNIT} (see: pofr server run --help).
POFR_SERVER_ARGS="--listen 0.0.0.0:2222"
`;
}

/** postinst, prerm and postrm of the server .deb. Purge keeps the store: it is evidence. */
export function serverDebScripts(): { postinst: string; prerm: string; postrm: string } {
  const head = `#!/bin/sh
set -e
DATA=${SERVER_DATA_DIR}
has_systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }
`;
  return {
    postinst: `${head}
case "$1" in
  configure)
    if ! getent passwd ${SERVER_USER} >/dev/null; then
      if command -v adduser >/dev/null 2>&1; then
        adduser --system --group --home "$DATA" --no-create-home --quiet ${SERVER_USER}
      else
        useradd --system --user-group --home-dir "$DATA" --shell /usr/sbin/nologin ${SERVER_USER}
      fi
    fi
    mkdir -p "$DATA"
    chown ${SERVER_USER}:${SERVER_USER} "$DATA"
    chmod 0700 "$DATA"
    # Creates the SQLite store and the SSH host key once; idempotent on upgrades (migrations run).
    fp=$(cd / && runuser -u ${SERVER_USER} -- /usr/bin/pofr server init --data "$DATA" 2>/dev/null)
    echo "pofr-server: store in $DATA, SSH host key $fp" >&2
    if has_systemd; then
      systemctl daemon-reload || true
      systemctl enable ${SERVER_UNIT} >/dev/null 2>&1 || true
      systemctl restart ${SERVER_UNIT}
    else
      echo "pofr-server: no systemd here; run it with: runuser -u ${SERVER_USER} -- /usr/bin/pofr server run --data $DATA --listen 0.0.0.0:2222" >&2
    fi
    echo "pofr-server: next: pofr server package-client --data $DATA --server THIS_HOST:2222 --out DIR" >&2
    ;;
esac
exit 0
`,
    prerm: `${head}
case "$1" in
  remove|upgrade|deconfigure)
    if has_systemd; then systemctl stop ${SERVER_UNIT} 2>/dev/null || true; fi
    if [ "$1" = remove ] && has_systemd; then systemctl disable ${SERVER_UNIT} >/dev/null 2>&1 || true; fi
    ;;
esac
exit 0
`,
    postrm: `${head}
case "$1" in
  purge)
    if [ -d "$DATA" ]; then
      echo "pofr-server: kept $DATA (the evidence store and the host key clients pin); delete it with: rm -r $DATA" >&2
    fi
    ;;
esac
if has_systemd; then systemctl daemon-reload || true; fi
exit 0
`,
  };
}
