import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { PofrError } from '../../errors.js';

/**
 * What `pofr server package-client` writes into a client package: the server to enroll with, its
 * pinned host key, and optionally the enrollment token and (OpenSSH mode) the server account. Each
 * key is the default of the `pofr-client` option of the same name (`ssh_user` → `--ssh-user`).
 * Unknown keys are ignored, so a package from a newer server still installs.
 */
export const packagedClientConfigSchema = z.object({
  server: z.string().min(1),
  fingerprint: z.string().regex(/^SHA256:/),
  token: z.string().min(1).optional(),
  ssh_user: z.string().min(1).optional(),
  /** The pofr version that wrote it (shown by `pofr-client --version` beside its own). */
  packaged_by: z.string().optional(),
});
export type PackagedClientConfig = z.infer<typeof packagedClientConfigSchema>;

/** The name of the configuration asset inside the single-file executable. */
export const CONFIG_ASSET = 'pofr-client.json';

/** Where the host package installs it; also read by a bare `pofr-client` when present. */
export const PACKAGED_CONFIG_PATH = '/etc/pofr/client.json';

export function parsePackagedConfig(text: string, where: string): PackagedClientConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new PofrError(
      'POFR_USAGE',
      `${where} is not JSON (${(e as Error).message}); reinstall the package`,
    );
  }
  const parsed = packagedClientConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new PofrError(
      'POFR_USAGE',
      `${where}: ${issue.path.join('.') || '(root)'} ${issue.message}; rebuild it with pofr server package-client`,
    );
  }
  return parsed.data;
}

/**
 * The configuration a packaged client runs with: the file at `path` (the operator's copy, which
 * they may edit) when it exists, else the one built into the executable, else none.
 */
export function loadPackagedConfig(path: string, builtIn: string | null): PackagedClientConfig | null {
  let text: string | null = null;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new PofrError('POFR_USAGE', `cannot read ${path}: ${(e as Error).message}`);
    }
  }
  if (text !== null) return parsePackagedConfig(text, path);
  return builtIn === null ? null : parsePackagedConfig(builtIn, 'the configuration built into pofr-client');
}
