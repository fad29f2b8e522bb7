import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { isPofrError } from '../errors.js';
import { verifyStore } from '../ingest/index.js';
import { registerAnalystCommands } from './analyst-commands.js';
import { registerClientCommands } from './client-commands.js';
import { registerDemoCommand } from './demo-command.js';
import { openStoreForData, registerServerCommands } from './server-commands.js';
import { registerWebCommand } from './web-command.js';

function version(): string {
  try {
    return (
      JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
        version: string;
      }
    ).version;
  } catch {
    return 'unknown';
  }
}

export function buildProgram(): Command {
  const program = new Command('pofr')
    .description(
      'forensic flight recorder for Linux: record processes, files and endpoints; store and replay them',
    )
    .version(version())
    .showHelpAfterError('(pofr --help lists every command)')
    .exitOverride();
  registerServerCommands(program);
  registerClientCommands(program);
  registerAnalystCommands(program, { openStoreForData, verify: (store, opts) => verifyStore(store, opts) });
  registerDemoCommand(program);
  registerWebCommand(program);
  for (const cmd of program.commands) {
    cmd.exitOverride();
    for (const sub of cmd.commands) sub.exitOverride();
  }
  return program;
}

/** The only place that sets the exit status: 0 ok, 1 failure (one line), 2 bad usage. */
export async function main(argv: readonly string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv as string[]);
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version are "errors" to commander; they already printed.
      process.exitCode = e.exitCode === 0 ? 0 : 2;
      return;
    }
    if (isPofrError(e)) {
      process.stderr.write(`pofr: ${e.message}\n`);
      process.exitCode = e.code === 'POFR_USAGE' || e.code === 'POFR_TIME_FORMAT' ? 2 : 1;
      return;
    }
    process.stderr.write(
      `pofr: unexpected error (a bug; please report it with this trace):\n${(e as Error).stack ?? String(e)}\n`,
    );
    process.exitCode = 1;
  }
}
