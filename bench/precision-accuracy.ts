/**
 * The shipped model's accuracy per reasoning mode at each weight precision and KV dtype: each
 * variant is made from the shipped directory by nfcot/quantize.py (onnxruntime's quantizers, in
 * models/.venv-ort), then answered by `bench/reasoning-cost.ts` (the same test-split prompts,
 * greedy; latent at T_z = 0 and at the default T_z, seeded) through a server on that directory.
 * Prints accuracy per mode and the difference from float32 in points. Run under the lock:
 *
 *   flock /tmp/heavy.lock npx tsx bench/precision-accuracy.ts [--num-prompts 300] [--variants fp32,int8,int4,...]
 *
 * Variants: fp32, fp16, int8, int4 (NF head and thought projection kept float32, the default),
 * int8-all / int4-all (--keep '': every MatMul quantized, the heads too), int4-lm (LM head kept
 * float32 as well), int8-b32 / int8-b64 / int8-b128 / int4-b32 / int4-b64 / int4-b128 (an explicit
 * quantization block along the input dimension), kv16 (float32 weights, float16 KV cache).
 */
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { ORT_PYTHON } from "./lib/ort-python.ts";

const { values } = parseArgs({
  options: {
    "num-prompts": { type: "string", default: "300" },
    // fp16 is left out by default: onnxruntime's CPU kernels run it ~16x slower (README).
    variants: { type: "string", default: "fp32,int8,int4,int8-all,int4-all,int4-lm,kv16" },
  },
});
const ROOT = resolve(import.meta.dirname, "..");
const SHIPPED = join(ROOT, "models/nfcot-trace-small");
const SCRATCH = join(ROOT, "bench/scratch/precision");
const VARIANTS: Record<string, string[]> = {
  fp32: [],
  fp16: ["--weights", "fp16"],
  int8: ["--weights", "int8"],
  int4: ["--weights", "int4"],
  "int8-all": ["--weights", "int8", "--keep", ""],
  "int4-all": ["--weights", "int4", "--keep", ""],
  "int4-lm": ["--weights", "int4", "--keep", "nf_head,thought_proj,lm_head"],
  "int8-b32": ["--weights", "int8", "--block", "32"],
  "int8-b64": ["--weights", "int8", "--block", "64"],
  "int8-b128": ["--weights", "int8", "--block", "128"],
  "int4-b32": ["--weights", "int4", "--block", "32"],
  "int4-b64": ["--weights", "int4", "--block", "64"],
  "int4-b128": ["--weights", "int4", "--block", "128"],
  kv16: ["--kv-dtype", "float16"],
};
const names = values.variants!.split(",");
for (const n of names)
  if (!VARIANTS[n]) throw new Error(`unknown variant ${n}; known: ${Object.keys(VARIANTS).join(", ")}`);

interface Row {
  condition: string;
  accuracy: number;
}
const results = new Map<string, Row[]>();
console.log(
  `# shipped model accuracy per precision, ${new Date().toISOString()}, ${values["num-prompts"]} test-split prompts, load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(" ")}`,
);
for (const n of names) {
  const dir = n === "fp32" ? SHIPPED : join(SCRATCH, n);
  if (n !== "fp32") {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(SCRATCH, { recursive: true });
    cpSync(SHIPPED, dir, { recursive: true });
    execFileSync(ORT_PYTHON, ["-m", "nfcot.quantize", dir, ...VARIANTS[n]!], {
      cwd: join(ROOT, "models"),
      stdio: ["ignore", "inherit", "inherit"],
    });
  }
  const out = join(SCRATCH, `${n}.json`);
  if (existsSync(out)) rmSync(out);
  // Exit code 1 only says reasoning-cost's own speed target was missed; the JSON is what we read.
  try {
    execFileSync(
      process.execPath,
      [
        "--import",
        "tsx",
        "bench/reasoning-cost.ts",
        "--num-prompts",
        values["num-prompts"]!,
        "--concurrency",
        "0",
        `--server-args=--model-dir ${dir}`,
        "--out",
        out,
      ],
      { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] },
    );
  } catch (e) {
    if (!existsSync(out)) throw e;
  }
  const r = JSON.parse(readFileSync(out, "utf8"));
  results.set(
    n,
    r.phases[0].results.map((x: Row) => ({ condition: x.condition, accuracy: x.accuracy })),
  );
}
const conditions = results.get(names[0]!)!.map((r) => r.condition);
const base = results.get("fp32");
console.log(`\n| variant | ${conditions.join(" | ")} |`);
console.log(`|---|${conditions.map(() => "---").join("|")}|`);
for (const n of names) {
  const cells = results.get(n)!.map((r, i) => {
    const d = base ? (r.accuracy - base[i]!.accuracy) * 100 : 0;
    return `${r.accuracy.toFixed(3)}${base && n !== "fp32" ? ` (${d >= 0 ? "+" : ""}${d.toFixed(1)})` : ""}`;
  });
  console.log(`| ${n} | ${cells.join(" | ")} |`);
}
console.log(
  `load average at end ${loadavg()
    .map((x) => x.toFixed(2))
    .join(" ")}`,
);
