/** Comparing a graph's outputs with a reference: the PyTorch model's, or the float32 graph's. */

/** max |got - want| / max |want| (over the indices `mask` keeps): the parity tests bound it by 1e-4. */
export function relErr(got: Float32Array, want: Float32Array, mask?: (i: number) => boolean): number {
  let d = 0;
  let s = 0;
  for (let i = 0; i < want.length; i++) {
    if (mask && !mask(i)) continue;
    d = Math.max(d, Math.abs(got[i]! - want[i]!));
    s = Math.max(s, Math.abs(want[i]!));
  }
  return d / s;
}

/** Share of positions whose greedy token changes, among those where the float32 model is
 * confident (top-1 probability >= 0.9: the trace and the answer; a program's random names and
 * constants are near-uniform guesses whose argmax means nothing). */
export function confidentFlips(got: Float32Array, want: Float32Array, V: number): number {
  const argmax = (x: Float32Array, o: number) => {
    let b = 0;
    for (let v = 1; v < V; v++) if (x[o + v]! > x[o + b]!) b = v;
    return b;
  };
  const topProb = (x: Float32Array, o: number, b: number) => {
    let z = 0;
    for (let v = 0; v < V; v++) z += Math.exp(x[o + v]! - x[o + b]!);
    return 1 / z;
  };
  let n = 0;
  let changed = 0;
  for (let i = 0; i < want.length / V; i++) {
    const w = argmax(want, i * V);
    if (topProb(want, i * V, w) < 0.9) continue;
    n++;
    if (argmax(got, i * V) !== w) changed++;
  }
  return changed / n;
}
