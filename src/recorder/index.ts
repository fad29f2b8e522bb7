export {
  diffEndpoints,
  diffFiles,
  diffProcesses,
  type EndpointDiff,
  type ObservedEndpoint,
  sameImage,
} from './diff.js';
export {
  type InventoryOptions,
  InventoryWatcher,
  parseGroup,
  parsePasswd,
  readInterfaces,
  readInventory,
  readOsName,
  readRoutes,
  readTimezone,
  readUsbDevices,
} from './inventory.js';
export { LiveState, type LiveStateView, processKey } from './live-state.js';
export { type EventCoverage, ProcfsSampler, type ProcfsSamplerOptions } from './procfs-sampler.js';
export {
  ALL_SOURCES,
  parseSources,
  Recorder,
  type RecorderOptions,
  SOURCE_NAMES,
  type SourceModes,
  type SourceSelection,
} from './recorder.js';
export type { RecorderSource, SourceHealth } from './source.js';
export {
  formatIpv6,
  hexToIp,
  type NetRow,
  parseNetTable,
  readNetns,
  readNetTables,
  tcpStateName,
  udpStateName,
} from './sources/net-table-reader.js';
export {
  classifyFdTarget,
  DEFAULT_PROC_ROOT,
  isFdDirectory,
  isKernelThread,
  isReadFailure,
  listTgids,
  type ProcStat,
  type ProcStatus,
  parseStat,
  parseStatus,
  type ReadFailure,
  readBootId,
  readBootTimeMicros,
  readClockTicks,
  readCmdline,
  readCwd,
  readExe,
  readFdTable,
  readLinkBytes,
  readProcFile,
  readSchedRunNs,
  readStat,
  readStatus,
  socketInode,
  splitCmdline,
} from './sources/procfs-reader.js';
export { cleanStaleTracing, locateTracefs, type StaleCleanup } from './sources/tracefs/tracefs-root.js';
export {
  type TracefsHealth,
  TracefsSource,
  type TracefsSourceOptions,
  type TracefsStart,
} from './tracefs-source.js';
