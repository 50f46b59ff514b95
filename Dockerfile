# syntax=docker/dockerfile:1
# CPU image of nfcot-serve. Build: docker build -t nfcot-serve:0.1.0 .
# CUDA variant: docker/Dockerfile.cuda. Kubernetes manifests: docker/k8s.
ARG NODE_VERSION=20

# --- deps: production node_modules only. tsx is a production dependency: the server runs from
# source. onnxruntime-node's postinstall would download the CUDA provider, which a CPU image never
# loads: package.json's allowScripts denies that script on npm 11 and later, and the image's npm
# (10 on node 20) ignores allowScripts and runs it, so ONNXRUNTIME_NODE_INSTALL=skip (the
# installer's own switch) makes it a no-op there.
FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
ENV ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev && npm cache clean --force

# --- runtime
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000
WORKDIR /app
# Files stay owned by root and only readable by the server's user: the process cannot rewrite its
# own code or model, and the pod can run with readOnlyRootFilesystem (tsx caches under /tmp).
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY src ./src
# The default model (NFCOT_MODEL_DIR's default resolves to /app/models/nfcot-trace-small).
COPY models/nfcot-trace-small ./models/nfcot-trace-small
# Numeric uid (the image's "node" user): Kubernetes' runAsNonRoot can only verify a numeric user.
USER 1000:1000
EXPOSE 8000
# node's own fetch: the slim image has no curl. Liveness only; readiness is /ready.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8000) + '/health', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))"]
# node itself is PID 1 (not npm, not the tsx CLI, which wrap it in a child): SIGTERM reaches the
# server's drain handler directly. Same program as `npm start`.
CMD ["node", "--import", "tsx", "src/server.ts"]
