import { Agent } from "undici";
import { startServer } from "/work/main/test/helpers/server.ts";
import { hostileCatalogue, knownGaps } from "/work/main/test/reliability/helpers/hostile-requests.ts";
const s = await startServer();
const info = s.engine.info;
const t = { url: s.url, port: Number(new URL(s.url).port), dispatcher: new Agent(), model: s.app.modelName, numThoughts: info.numThoughts, thoughtDim: info.thoughtDim, maxContext: info.maxContext, maxN: s.config.maxN, maxQueue: s.config.maxQueue, bodyLimit: s.config.bodyLimit };
const pat = new RegExp(process.argv[2] ?? ".");
for (const h of [...hostileCatalogue({ slowClients: 0 }), ...knownGaps()]) {
  if (!pat.test(`${h.kind}: ${h.name}`)) continue;
  const r = await h.send(t);
  console.log(`${h.kind}: ${h.name}`.slice(0, 70).padEnd(70), r.status, r.error ?? "", r.body.slice(0, 150));
}
await s.close();
