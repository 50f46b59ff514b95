import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/** A full garbage collection of this thread's heap, without starting Node with --expose-gc:
 * memory compared at two points is compared after a collection at each, not wherever the
 * collector's sawtooth happened to be (under load the heap swings by tens of MiB). */

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as (opts?: { type: "major"; execution: "sync" }) => void;

export function collectGarbage(): void {
  gc();
  gc(); // a second pass frees what the first one's finalizers released
}
