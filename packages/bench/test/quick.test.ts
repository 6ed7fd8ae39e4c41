/**
 * The benchmark still works: `--quick` end to end (mosquitto, every workload,
 * both clients, the codec micro-benchmark), run from the TypeScript sources.
 * It asserts that every workload produced numbers for both clients, and
 * nothing about speed.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import type { Report } from "../src/report.ts"

const MAIN = fileURLToPath(new URL("../src/main.ts", import.meta.url))

const runQuick = (json: string): Promise<{ code: number | null; output: string }> =>
  new Promise((resolve) => {
    const child = ChildProcess.spawn(process.execPath, [MAIN, "--quick", "--json", json], {
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString("utf8")).slice(-20_000)
    }
    child.stdout.on("data", collect)
    child.stderr.on("data", collect)
    // The orchestrator kills its workers and broker when it gets SIGTERM.
    const timer = setTimeout(() => child.kill("SIGTERM"), 110_000)
    child.once("exit", (code) => {
      clearTimeout(timer)
      resolve({ code, output })
    })
  })

describe("npm run bench -- --quick", () => {
  it("runs every workload for effect-mqtt and MQTT.js and writes the JSON", async () => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-mqtt-bench-test-"))
    try {
      const json = Path.join(dir, "results.json")
      const { code, output } = await runQuick(json)
      expect(code, output).toBe(0)
      const report = JSON.parse(Fs.readFileSync(json, "utf8")) as Report

      expect(report.variants.map((v) => v.workload).sort()).toEqual(expect.arrayContaining([1, 2, 3, 4, 5, 6]))
      for (const variant of report.variants) {
        for (const client of ["effect", "mqttjs"] as const) {
          const runs = variant.runs[client] ?? []
          expect(runs.length, `${variant.id} ${client} ran`).toBeGreaterThan(0)
          const value = variant.medians[client]?.[variant.primary]
          expect(value, `${variant.id} ${client} ${variant.primary}: ${JSON.stringify(runs)}`).toBeGreaterThan(0)
          // Against the minimal peer nothing is lost in a broker: every publish reached it, every message the subscriber.
          if (variant.id.startsWith("w1-peer-")) expect(runs.every((run) => run.ok), `${variant.id} ${client}: ${JSON.stringify(runs)}`).toBe(true)
          // Through mosquitto (on Linux): how busy the broker was, a share of one core (10 ms clock ticks over a
          // quick run of ~0.1 s can read high, hence the loose upper bound).
          if (/^w1-qos/.test(variant.id) && process.platform === "linux") {
            const busy = variant.medians[client]?.brokerBusy
            expect(busy, `${variant.id} ${client} brokerBusy`).toBeGreaterThan(0)
            expect(busy, `${variant.id} ${client} brokerBusy`).toBeLessThanOrEqual(200)
          }
        }
      }
      expect(report.codec?.length).toBe(3)
      for (const row of report.codec ?? []) {
        expect(row.oursNs).toBeGreaterThan(0)
        expect(row.bareNs).toBeGreaterThan(0)
      }
    } finally {
      Fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 120_000)
})
