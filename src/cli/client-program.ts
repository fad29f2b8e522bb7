import { Command } from 'commander';
import { pofrVersion } from '../version.js';
import { registerClientCommands } from './client-commands.js';
import { runCli } from './run-cli.js';

/**
 * `pofr client …` alone: the same commands as in the full program, without loading the server, the
 * store's database drivers, detection or the web UI. The recorder runs for months on every host;
 * what it does not load does not sit in its memory (about 25 MB less resident) or slow its start.
 */
export function buildClientOnlyProgram(): Command {
  const program = new Command('pofr')
    .description('forensic flight recorder for Linux: the recorder on a monitored host')
    .version(pofrVersion())
    .showHelpAfterError('(pofr --help lists every command)')
    .exitOverride();
  registerClientCommands(program);
  return program;
}

export async function mainClientOnly(argv: readonly string[]): Promise<void> {
  await runCli(buildClientOnlyProgram(), argv);
}
