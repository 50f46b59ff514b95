/** Reading onnxruntime's profiler output (a Chrome trace: "model_run" per session.run, one
 * "<node>_kernel_time" event per kernel) into per-step times, grouped by what the nodes compute. */

interface TraceEvent {
  cat: string;
  name: string;
  ts: number; // us
  dur: number; // us
  args?: { op_name?: string; output_size?: string | number };
}

export interface NodeTime {
  op: string;
  ms: number; // per step
  outBytes: number;
}

export interface OpTimes {
  runMs: number; // mean model_run per step
  kernels: number; // kernel calls per step
  byNode: Map<string, NodeTime>;
  byOpType: [string, number][]; // descending ms per step
}

/** Control-flow nodes: their kernel time is their subgraph's, whose nodes the trace also lists. */
const CONTROL_FLOW = new Set(["If", "Loop", "Scan"]);

/** The last `steps` session runs of the trace. */
export function readProfile(trace: TraceEvent[], steps: number): OpTimes {
  const runs = trace
    .filter((e) => e.cat === "Session" && e.name === "model_run")
    .sort((a, b) => a.ts - b.ts)
    .slice(-steps);
  if (runs.length < steps) throw new Error(`profile holds ${runs.length} runs, wanted ${steps}`);
  const from = runs[0]!.ts;
  const byNode = new Map<string, NodeTime>();
  let kernels = 0;
  for (const e of trace) {
    if (e.cat !== "Node" || !e.name.endsWith("_kernel_time") || e.ts < from) continue;
    if (CONTROL_FLOW.has(e.args?.op_name ?? "")) continue;
    const name = e.name.slice(0, -"_kernel_time".length);
    const n = byNode.get(name) ?? { op: e.args?.op_name ?? "?", ms: 0, outBytes: Number(e.args?.output_size ?? 0) };
    n.ms += e.dur / 1000 / steps;
    byNode.set(name, n);
    kernels++;
  }
  const ops = new Map<string, number>();
  for (const n of byNode.values()) ops.set(n.op, (ops.get(n.op) ?? 0) + n.ms);
  return {
    runMs: runs.reduce((s, r) => s + r.dur, 0) / 1000 / steps,
    kernels: kernels / steps,
    byNode,
    byOpType: [...ops].sort((a, b) => b[1] - a[1]),
  };
}

/** Groups named by what they compute. Node names come from the exporter's module scopes
 * (/q_proj_3/MatMul, /mlp/gate_proj/MatMul, /lm_head/MatMul) or from onnxruntime's fusions, which
 * keep the first fused node's name. */
const GROUPS: [string, (name: string, n: NodeTime) => boolean][] = [
  ["LM head", (name) => /lm_head/.test(name)],
  ["NF head, thought projection, embedding", (name) => /nf_head|thought_proj|embed_tokens/.test(name)],
  ["q/k/v/o projections", (name) => /[qkvo]_proj/.test(name)],
  ["MLP (gate, up, down, SiLU)", (name) => /mlp/.test(name)],
  ["RMSNorm", (name) => /layernorm|\/norm\//.test(name)],
  // Reading each row's context out of the pool: Gathers whose output is more than a few indices.
  ["attention: gather of the paged pool", (_, n) => n.op === "Gather" && n.outBytes > 4096],
  // Shape arithmetic the exporter emits around every reshape: tiny outputs, pure per-node overhead.
  ["shape arithmetic (outputs <= 64 bytes)", (_, n) => n.outBytes <= 64],
  ["attention: scores, mask, softmax, PV, rotary, reshapes", () => true],
];

export function categorize(t: OpTimes): { name: string; ms: number; nodes: number }[] {
  const out = GROUPS.map(([name]) => ({ name, ms: 0, nodes: 0 }));
  for (const [name, n] of t.byNode) {
    const i = GROUPS.findIndex(([, f]) => f(name, n));
    out[i]!.ms += n.ms;
    out[i]!.nodes++;
  }
  return out.filter((c) => c.nodes > 0);
}
