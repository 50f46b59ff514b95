import { startServer } from "/work/main/test/helpers/server.ts";
const s = await startServer({ kvCacheBlocks: 16, blockSize: 4 }); // 64 positions
const r = await fetch(`${s.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "nfcot-trace-small", messages: [{ role: "user", content: "a = 1\nb = a + 2\nprint(b)" }], max_tokens: 100, ignore_eos: true, reasoning: { mode: "explicit" } }) });
console.log(r.status, (await r.text()).slice(0, 600));
await s.close();
