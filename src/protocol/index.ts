export {
  type BatchFrame,
  type BatchHeader,
  batchHeaderSchema,
  decodeRecords,
  GENESIS_HASH,
  MAGIC,
  type OpenedBatch,
  openBatch,
  PAYLOAD_ENCODING,
  PROTOCOL_VERSION,
  readBatchFrame,
  type SealedBatch,
  type SealInput,
  sealBatch,
  sha256Hex,
  verifyBatchFrame,
} from './batch.js';
export { displayBytes, fromWireBytes, isRawBytes, toWireBytes, type WireBytes } from './bytes.js';
export { generateSigningKeyPair, loadPrivateKey, loadPublicKey, type SigningKeyPair } from './keys.js';
export { LIMITS } from './limits.js';
export {
  type ArgvSource,
  type EndpointInfo,
  type FileInfo,
  type FileKind,
  type Inventory,
  type InventoryGroup,
  type InventoryUser,
  type PofrRecord,
  type ProcessImage,
  type ProcRef,
  type RecorderConfig,
  type RecordOf,
  type RecordType,
  recordSchema,
  type SourceMode,
} from './records.js';
