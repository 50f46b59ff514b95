import type { FastifyInstance } from "fastify";

/** Every (method, path pattern) Fastify's router holds, read from the router's own radix tree
 * (printRoutes: each node's label is the text it adds to its parent's path), so a test that walks it covers routes added later, plugins' routes and the HEAD
 * routes Fastify adds by itself. */

export interface RouterRoute {
  method: string;
  url: string;
}

export function routerRoutes(app: FastifyInstance): RouterRoute[] {
  const out: RouterRoute[] = [];
  const stack: { depth: number; path: string }[] = [];
  for (const line of app.printRoutes().split("\n")) {
    // "│   │   └── :model (GET, HEAD)": four characters of tree per level.
    const m = /^([│ ]*)(?:├── |└── )(.*?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    while (stack.length > depth) stack.pop();
    const path = (stack.at(-1)?.path ?? "") + m[2]!;
    stack.push({ depth, path });
    for (const method of m[3]?.split(", ") ?? []) out.push({ method, url: path });
  }
  return out;
}
