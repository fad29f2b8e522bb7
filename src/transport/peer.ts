/** Where the transport logs (JSON-friendly fields); the server composes pino behind it. */
export type TransportLog = (msg: string, fields?: object) => void;

/** Who is on the other end of a channel, as authentication established it. */
export interface PeerContext {
  /** "ip:port" of the peer ("[v6]:port"). */
  readonly remote: string;
  /** The peer's address alone: what per-source limits count. */
  readonly source: string;
  readonly fingerprint: string | null;
  /** The SSH user name it logged in as. */
  readonly user: string | null;
}
