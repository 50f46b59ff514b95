// Worker threads do not inherit the parent's module hooks on Node 20: load TypeScript through
// tsx explicitly so the engine worker runs from source like the rest of the server.
import { register } from "tsx/esm/api";

register();
await import("./worker.ts");
