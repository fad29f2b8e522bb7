// Entry point of `pofr` (bin/pofr imports this); program.ts holds the commands so tests can build it.
// `pofr client …` loads only the client's commands (see client-program.ts); everything else the lot.
if (process.argv[2] === 'client') {
  const { mainClientOnly } = await import('./client-program.js');
  await mainClientOnly(process.argv);
} else {
  const { main } = await import('./program.js');
  await main(process.argv);
}

export {};
