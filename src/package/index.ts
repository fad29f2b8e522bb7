export { type BundleReport, bundleClient, CLIENT_BUNDLE } from './client-bundle.js';
export { CLIENT_STATE_DIR, CLIENT_UNIT, clientUnit } from './client-host-files.js';
export { buildClientPackages, type ClientPackageOptions, type ClientPackages } from './package-client.js';
export { buildServerPackage, type ServerPackage } from './package-server.js';
export { SERVER_DATA_DIR, SERVER_UNIT, SERVER_USER } from './server-host-files.js';
