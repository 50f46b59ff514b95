import { fileURLToPath } from "node:url";

/** The Python that has onnxruntime's quantizers (models/.venv-ort, made by scripts/test-deps.sh),
 * or NFCOT_ORT_PYTHON: Debian's Python runs the rest of the model side. */
export const ORT_PYTHON =
  process.env.NFCOT_ORT_PYTHON ?? fileURLToPath(new URL("../../models/.venv-ort/bin/python", import.meta.url));
