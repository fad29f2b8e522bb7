export { type BundleReport, bundleClient, CLIENT_BUNDLE } from './client-bundle.js';
export { CLIENT_STATE_DIR, CLIENT_UNIT, clientUnit } from './client-host-files.js';
export { buildClientPackages, type ClientPackageOptions, type ClientPackages } from './package-client.js';
