import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

const root = fileURLToPath(new URL(".", import.meta.url))

export default defineConfig({
  resolve: {
    // Tests run on the sources, not on dist/:
    //   @effect-mqtt/core     -> packages/core/src/index.ts
    //   @effect-mqtt/core/X   -> packages/core/src/X.ts   (same for node)
    alias: [
      { find: /^@effect-mqtt\/(core|node)$/, replacement: `${root}packages/$1/src/index.ts` },
      { find: /^@effect-mqtt\/(core|node)\/(.+?)(?:\.js)?$/, replacement: `${root}packages/$1/src/$2.ts` }
    ]
  },
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**", ".toolchain/**"],
    // Integration tests start their own brokers on OS-assigned ports on
    // 127.0.0.1 (see test/helpers), so test files may run in parallel.
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
