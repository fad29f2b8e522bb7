import type { ProcessImage } from '../protocol/index.js';
import type { ProcessesTable } from '../store/index.js';
import { kernelText } from './kernel-text.js';

/** A process image's cgroup, container and namespaces as `processes` columns (null when absent). */
export function contextColumns(
  proc: ProcessImage,
): Pick<
  ProcessesTable,
  'cgroup' | 'cgroup_raw' | 'container_id' | 'ns_pid' | 'ns_net' | 'ns_mnt' | 'ns_user'
> {
  const cgroup = proc.cgroup == null ? null : kernelText(proc.cgroup);
  return {
    cgroup: cgroup?.text ?? null,
    cgroup_raw: cgroup?.raw ?? null,
    container_id: proc.container_id ?? null,
    ns_pid: proc.ns_pid ?? null,
    ns_net: proc.ns_net ?? null,
    ns_mnt: proc.ns_mnt ?? null,
    ns_user: proc.ns_user ?? null,
  };
}
