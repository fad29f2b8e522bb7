// `npm run build` runs this after tsc: it leaves dist/client/pofr-client.cjs for package-client.
import { bundleClient } from './client-bundle.js';

const report = await bundleClient();
process.stderr.write(
  `pofr: client bundle ${report.path} (${(report.bytes / 1024).toFixed(0)} KiB; ${report.packages.join(', ')})\n`,
);
