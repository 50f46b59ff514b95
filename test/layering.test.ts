import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";

/** Imports run down the layers only: model <- engine <- config/errors <- the HTTP kernel (src/http)
 * <- routes (api, ops) <- app <- server. Inside the engine, scheduling (scheduler, block manager, sequence, samplers) and the
 * options never reach the runner or onnxruntime, and the runner never imports scheduling state.
 * Bench code never imports tests; src imports neither. Every import statement counts (type-only
 * and dynamic ones with a literal name too), read by TypeScript's own pre-processor. */

const ROOT = fileURLToPath(new URL("..", import.meta.url));

function filesUnder(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(join(ROOT, path)).isDirectory())
      return name === "node_modules" || name === "scratch" ? [] : filesUnder(path);
    return /\.(ts|mts|mjs|js)$/.test(name) ? [path] : [];
  });
}

/** A relative import as a path from the repository root; a package as its name ("@scope/name"). */
function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), "utf8");
  return ts.preProcessFile(text, true, true).importedFiles.map(({ fileName: spec }) => {
    if (spec.startsWith(".")) return relative(ROOT, resolve(ROOT, dirname(file), spec));
    if (spec.startsWith("node:") || builtinModules.includes(spec)) return "node:";
    const parts = spec.split("/");
    return spec.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!;
  });
}

const isPackage = (target: string) => !target.includes("/") || target.startsWith("@");
const FASTIFY = (target: string) =>
  target === "fastify" || target.startsWith("fastify-") || target.startsWith("@fastify/");

/** A src file's layer; a new folder under src/ sits with the routes until placed. */
function layerOf(file: string): number {
  if (file.startsWith("src/model/")) return 0;
  if (file.startsWith("src/engine/")) return 1;
  if (file === "src/config.ts" || file === "src/errors.ts") return 2;
  if (file.startsWith("src/http/")) return 3;
  if (file === "src/app.ts") return 5;
  if (file === "src/server.ts") return 6;
  return 4;
}
const LAYER_NAMES = ["model", "engine", "config/errors", "the HTTP kernel", "routes (api, ops)", "app", "server"];

const SCHEDULING = ["scheduler", "block-manager", "sequence", "sampler", "nf-sampler", "options"].map(
  (n) => `src/engine/${n}.ts`,
);
const RUNNER = "src/engine/runner.ts";
const SCHEDULING_STATE = [
  "scheduler",
  "block-manager",
  "sequence",
  "engine",
  "worker",
  "client",
  "sampler",
  "nf-sampler",
].map((n) => `src/engine/${n}.ts`);

const graph = new Map<string, string[]>();
for (const dir of ["src", "bench", "test", "scripts"]) for (const f of filesUnder(dir)) graph.set(f, importsOf(f));

/** The chain of imports from `from` to the first file or package `bad` accepts, or null. */
function reach(from: string, bad: (target: string) => boolean): string[] | null {
  const parent = new Map<string, string | null>([[from, null]]);
  const queue = [from];
  while (queue.length) {
    const at = queue.shift()!;
    for (const next of graph.get(at) ?? []) {
      if (parent.has(next)) continue;
      parent.set(next, at);
      if (bad(next)) {
        const chain = [next];
        for (let p = parent.get(next); p; p = parent.get(p)) chain.unshift(p);
        return chain;
      }
      queue.push(next);
    }
  }
  return null;
}

function violations(): string[] {
  const out: string[] = [];
  for (const [file, targets] of graph) {
    for (const to of targets) {
      const edge = `${file} -> ${to}`;
      if (file.startsWith("bench/") && to.startsWith("test/"))
        out.push(`${edge}: bench code never imports tests (shared helpers live in bench/lib)`);
      if (!file.startsWith("src/")) continue;
      if (to === "node:") continue;
      if (isPackage(to)) {
        if (FASTIFY(to) && layerOf(file) <= 1) out.push(`${edge}: the engine and the model never import fastify`);
        if (to === "onnxruntime-node" && file !== RUNNER) out.push(`${edge}: only the runner touches onnxruntime`);
        continue;
      }
      if (!to.startsWith("src/")) {
        out.push(`${edge}: src imports nothing outside src (tests, bench, scripts)`);
        continue;
      }
      if (layerOf(to) > layerOf(file))
        out.push(`${edge}: ${LAYER_NAMES[layerOf(file)]} imports ${LAYER_NAMES[layerOf(to)]}, a layer above it`);
      if (file === RUNNER && SCHEDULING_STATE.includes(to))
        out.push(`${edge}: the runner never imports scheduling state`);
    }
  }
  for (const file of SCHEDULING) {
    const chain = reach(file, (t) => t === RUNNER || t === "onnxruntime-node");
    if (chain)
      out.push(`${chain.join(" -> ")}: scheduling and the engine options never reach the runner or onnxruntime`);
  }
  return out;
}

test("imports run down the layers only", () => {
  assert.ok(graph.size > 100, `read ${graph.size} files`);
  assert.ok(graph.get(RUNNER)?.includes("onnxruntime-node"), "the reader sees the runner's imports");
  assert.deepEqual(violations(), []);
});
