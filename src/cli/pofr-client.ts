// Entry point of the single-file `pofr-client` (src/package bundles it; `node` runs it too): the
// client commands at the top level, with the packaged server, fingerprint and token as defaults.
import { getAsset, isSea } from 'node:sea';
import { Command } from 'commander';
import {
  CONFIG_ASSET,
  loadPackagedConfig,
  PACKAGED_CONFIG_PATH,
  type PackagedClientConfig,
} from '../roles/client/packaged-config.js';
import { pofrVersion } from '../version.js';
import { addClientCommands } from './client-commands.js';
import { runCli } from './run-cli.js';

function builtInConfig(): string | null {
  if (!isSea()) return null;
  try {
    return getAsset(CONFIG_ASSET, 'utf8');
  } catch {
    return null;
  }
}

/** Sets each packaged value as the default of the option of the same name, wherever one exists. */
function applyDefaults(program: Command, config: PackagedClientConfig): void {
  for (const cmd of program.commands) {
    for (const [key, value] of Object.entries(config)) {
      if (typeof value !== 'string') continue;
      const attribute = key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
      if (cmd.options.some((o) => o.attributeName() === attribute)) {
        cmd.setOptionValueWithSource(attribute, value, 'config');
      }
    }
  }
}

export function buildClientProgram(config: PackagedClientConfig | null): Command {
  const program = new Command('pofr-client')
    .description(
      config
        ? `pofr's recorder for this host, packaged for the server ${config.server} (${config.fingerprint})`
        : "pofr's recorder for this host",
    )
    .version(pofrVersion())
    .showHelpAfterError('(pofr-client --help lists every command)');
  // Run from the executable itself: `pofr-client run …` (argv[1] repeats the executable in a SEA).
  addClientCommands(program, { relaunchArgs: () => (isSea() ? [] : [process.argv[1]]) });
  if (config) applyDefaults(program, config);
  return program;
}

export async function main(argv: readonly string[]): Promise<void> {
  let config: PackagedClientConfig | null;
  try {
    config = loadPackagedConfig(process.env.POFR_CLIENT_CONFIG ?? PACKAGED_CONFIG_PATH, builtInConfig());
  } catch (e) {
    process.stderr.write(`pofr-client: ${(e as Error).message}\n`);
    process.exitCode = 1;
    return;
  }
  await runCli(buildClientProgram(config), argv);
}

void main(process.argv);
