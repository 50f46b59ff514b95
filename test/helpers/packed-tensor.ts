import ort from "onnxruntime-node";

/** A tensor as the Python parity scripts print it: raw little-endian bytes in base64. */
export interface Packed {
  dtype: string;
  shape: number[];
  data: string;
}

export function unpack(x: Packed): ort.Tensor {
  const b = Buffer.from(x.data, "base64");
  const ab = b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
  const data = x.dtype === "int64" ? new BigInt64Array(ab) : new Float32Array(ab);
  return new ort.Tensor(x.dtype === "int64" ? "int64" : "float32", data, x.shape);
}
