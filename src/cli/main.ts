// Entry point of `pofr` (bin/pofr imports this); program.ts holds the commands so tests can build it.
import { main } from './program.js';

await main(process.argv);
