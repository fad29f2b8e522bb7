export { buildApp, type WebAppOptions } from './app.js';
export { BUILT_UI_DIR, isLoopback, type RunningWeb, startWeb, type WebServerOptions } from './serve.js';
export { captureSql, inlineParameters } from './sql-capture.js';
