/**
 * One archive being read, at some depth of nesting: what its members are called and
 * what they count against. The top archive is level 0; an archive found among the
 * members of a level (with `nested: true`) is read as the next level.
 */
import type { ArchiveEntry } from './archive-entry.ts';
import type { Budget } from './limits.ts';

export interface ArchiveLevel {
  /** the archive for messages: the top archive's name, then `!` and each nested archive's path */
  readonly name: string;
  /** put before each member's normalised name to make its `path` ('' at the top) */
  readonly pathPrefix: string;
  /** put before each member's normalised name to make its `absolutePath` */
  readonly absolutePrefix: string;
  readonly depth: number;
  readonly budget: Budget;
  readonly signal?: AbortSignal;
  /** the member being read at this level (for the limits' messages); set by the format readers */
  member?: string;
}

/** The level for the members of `entry`, a nested archive found at `parent`. */
export function childLevel(parent: ArchiveLevel, entry: ArchiveEntry): ArchiveLevel {
  return {
    name: `${parent.name}!${entry.path.slice(parent.pathPrefix.length)}`,
    pathPrefix: `${entry.path}!`,
    absolutePrefix: `${entry.absolutePath}!`,
    depth: parent.depth + 1,
    budget: parent.budget,
    ...(parent.signal ? { signal: parent.signal } : {}),
  };
}
