import { setFlagsFromString } from 'node:v8';

/**
 * Keeps V8's young generation at the size it has when the recorder starts (1–2 MiB a semi-space)
 * instead of letting it double up to 16 MiB a semi-space under an exec storm's allocation rate.
 * The recorder's objects either die within a cycle or live for a batch (seconds) and are promoted
 * either way, so the large young generation bought it little but cost ~25 MB of resident memory
 * (bench/exec-capture, medians of five alternating runs: RSS before the storm 106 → 81 MB, the
 * storm's peak 162 → 150 MB; CPU unchanged within the noise).
 *
 * `--max-semi-space-size` would say the same but is read only when the heap is made, that is on the
 * command line or in NODE_OPTIONS, which neither `pofr client run` nor the packaged executable
 * controls; the growth factor is read at each growth, so the recorder can set it for its own
 * process. Only `client run` calls it: the flag is the whole process's.
 */
export function boundYoungGeneration(): void {
  setFlagsFromString('--semi-space-growth-factor=1');
}
