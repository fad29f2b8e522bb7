import { Command } from 'commander';
import { verifyStore } from '../ingest/index.js';
import { pofrVersion } from '../version.js';
import { registerAnalystCommands } from './analyst-commands.js';
import { registerClientCommands } from './client-commands.js';
import { registerDemoCommand } from './demo-command.js';
import { registerDetectCommands } from './detect-commands.js';
import { registerExportCommand } from './export-command.js';
import { registerPackageCommands } from './package-commands.js';
import { runCli } from './run-cli.js';
import { dataOpt, openStoreForData, registerServerCommands } from './server-commands.js';
import { registerWebCommand } from './web-command.js';

export function buildProgram(): Command {
  const program = new Command('pofr')
    .description(
      'forensic flight recorder for Linux: record processes, files and endpoints; store and replay them',
    )
    .version(pofrVersion())
    .showHelpAfterError('(pofr --help lists every command)')
    .exitOverride();
  registerPackageCommands(registerServerCommands(program), dataOpt);
  registerClientCommands(program);
  registerAnalystCommands(program, { openStoreForData, verify: (store, opts) => verifyStore(store, opts) });
  registerDetectCommands(program, openStoreForData);
  registerDemoCommand(program);
  registerWebCommand(program);
  registerExportCommand(program, openStoreForData);
  return program;
}

/** Runs `pofr` with these arguments (see runCli for the exit status). */
export async function main(argv: readonly string[]): Promise<void> {
  await runCli(buildProgram(), argv);
}
