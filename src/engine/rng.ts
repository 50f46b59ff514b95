import { randomBytes } from "node:crypto";

/** One splitmix32 step: spreads a 32-bit state over all output bits, so that nearby seeds
 * (seed, seed + 1, ... for the n choices of one request) give unrelated streams. */
function splitmix32(state: number): [next: number, output: number] {
  const next = (state + 0x9e3779b9) | 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  z ^= z >>> 16;
  return [next, z >>> 0];
}

const TWO_POW_32 = 2 ** 32;
const TWO_POW_53 = 2 ** 53;

/** Seeded PRNG: sfc32 (Chris Doty-Humphrey's Small Fast Counting generator, 128-bit state, passes
 * PractRand), its four state words filled by splitmix32 from the seed. Each request owns one, so
 * its output depends on its seed alone, never on what else is in the batch. */
export class Rng {
  /** The 32-bit seed this stream was built from (reportable, so a run can be replayed). */
  readonly seed: number;
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  /** Second value of the last Box-Muller pair, returned by the next normal(). */
  private spare: number | null = null;

  constructor(seed32: number) {
    this.seed = seed32 >>> 0;
    let s = this.seed;
    const word = (): number => {
      const [next, out] = splitmix32(s);
      s = next;
      return out;
    };
    this.a = word();
    this.b = word();
    this.c = word();
    this.d = word();
    // Warm-up recommended for sfc32: the first outputs still show the seeding structure.
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  /** A seeded stream; null draws the seed from node:crypto. Seeds are safe integers (OpenAI's
   * `seed` is any int64 the JSON layer can carry): seeds in [0, 2^32) are used as is, others fold
   * their high 32 bits into the low ones. */
  static fromSeed(seed: number | null): Rng {
    if (seed === null) return new Rng(randomBytes(4).readUInt32LE(0));
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${seed}`);
    const lo = seed >>> 0;
    const hi = Math.floor(seed / TWO_POW_32) >>> 0;
    return new Rng(hi === 0 ? lo : (lo ^ Math.imul(hi, 0x9e3779b1)) >>> 0);
  }

  /** The generator of choice `index` of a request seeded with `seed`: the 32-bit folded seed plus
   * the index, so for seeds below 2^32 choice i draws exactly like seed + i (and never overflows). */
  static forChoice(seed: number | null, index: number): Rng {
    if (seed === null) return Rng.fromSeed(null);
    return new Rng((Rng.fromSeed(seed).seed + index) >>> 0);
  }

  /** Raw sfc32 output in [0, 2^32). */
  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1) with 53 random bits (two raw outputs), so tiny probabilities are not
   * rounded away when drawing from a 150k-token vocabulary. */
  next(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 2 ** 26 + lo) / TWO_POW_53;
  }

  /** Standard normal by Box-Muller; each pair of uniforms gives two normals, the second kept. */
  normal(): number {
    if (this.spare !== null) {
      const z = this.spare;
      this.spare = null;
      return z;
    }
    const u1 = 1 - this.next(); // (0, 1]: log(0) is never taken
    const u2 = this.next();
    const r = Math.sqrt(-2 * Math.log(u1));
    const theta = 2 * Math.PI * u2;
    this.spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  }
}
