import { writeFileSync } from "node:fs";
import { generateOpenApiDocument } from "./openapi-document.ts";
import { serializeOpenApi } from "../src/api/openapi.ts";

/** Writes openapi/openapi.json from the route schemas: `npx tsx scripts/openapi.ts`. Commit the
 * result; test/openapi-drift.test.ts fails when it no longer matches the code. */

const path = new URL("../openapi/openapi.json", import.meta.url);
writeFileSync(path, serializeOpenApi(await generateOpenApiDocument()));
console.log(`wrote ${path.pathname}`);
