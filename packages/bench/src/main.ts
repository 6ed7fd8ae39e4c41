/**
 * `npm run bench [-- options]`: effect-mqtt against MQTT.js (and mosquitto's C
 * clients where they can run the workload) on one mosquitto broker.
 *
 * For each workload, rounds alternate the clients (effect-mqtt, MQTT.js, C,
 * effect-mqtt, MQTT.js, C, …); every run starts fresh worker processes. Prints
 * medians and the ratio effect-mqtt / MQTT.js, and writes the results as JSON
 * and as Markdown. Workload 1 also runs against a minimal acknowledging peer
 * instead of mosquitto (`w1-peer-*`), where the client and not the broker
 * sets the rate.
 *
 * Options:
 *   --quick            small counts, one round: proves the benchmark works (< 1 minute)
 *   --rounds N         rounds per workload (default 3; quick: 1)
 *   --only a,b         only the workloads whose id starts with one of these (w1, w2-burst-large, w6…)
 *   --clients a,b      only these clients (effect, mqttjs, c)
 *   --no-c             skip the C reference
 *   --no-codec         skip the codec micro-benchmark
 *   --json FILE        where to write the JSON (default packages/bench/results.json; quick: results-quick.json;
 *                      any partial run (--only, --clients, --rounds, --no-c, --no-codec, --profile): results-partial.json)
 *   --markdown FILE    where to write the Markdown (default packages/bench/RESULTS.md, for a full standard run only)
 *   --from-json FILE   run nothing: render FILE (a JSON written before) as text and as Markdown (RESULTS.md)
 *   --profile          CPU-profile effect-mqtt's workers (node --cpu-prof) and list the hottest functions
 *   --profile-dir DIR  where the .cpuprofile files go (default: a new temp dir)
 *   --help             print these options
 */
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { BenchError, type Broker, startBroker } from "./broker.ts"
import { killAll } from "./children.ts"
import { now } from "./measure.ts"
import { hotFunctions, renderHot } from "./profile.ts"
import type { ClientName } from "./protocol.ts"
import {
  checkTargets,
  CLIENT_LABELS,
  codecRows,
  type Meta,
  renderText,
  type Report,
  summarize,
  type VariantResult,
  writeReport
} from "./report.ts"
import { cClientsAvailable } from "./runners/mosquitto.ts"
import { runCodec } from "./workloads/codec.ts"
import { allVariants } from "./workloads/index.ts"
import type { Measurement, RunContext } from "./workloads/shared.ts"

const PACKAGE_DIR = fileURLToPath(new URL("..", import.meta.url))

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    rounds: { type: "string" },
    only: { type: "string" },
    clients: { type: "string" },
    "no-c": { type: "boolean", default: false },
    "no-codec": { type: "boolean", default: false },
    json: { type: "string" },
    "from-json": { type: "string" },
    markdown: { type: "string" },
    profile: { type: "boolean", default: false },
    "profile-dir": { type: "string" },
    help: { type: "boolean", default: false }
  },
  allowPositionals: false
})

if (args.help) {
  const usage = Fs.readFileSync(fileURLToPath(import.meta.url), "utf8").match(/\/\*\*\n([\s\S]*?)\*\//)?.[1] ?? ""
  process.stdout.write(`${usage.replace(/^ \* ?/gm, "")}\n`)
  process.exit(0)
}

const quick = args.quick
const rounds = args.rounds !== undefined ? Number(args.rounds) : quick ? 1 : 3
const only = args.only?.split(",").filter((s) => s !== "")
const onlyClients = args.clients?.split(",").filter((s) => s !== "")
/** Not the standard full run: its results must not overwrite the published ones by default. */
const partial = only !== undefined || onlyClients !== undefined || args.rounds !== undefined || args["no-c"] ||
  args["no-codec"] || args.profile || args["profile-dir"] !== undefined
const jsonPath = args.json ??
  Path.join(PACKAGE_DIR, quick ? "results-quick.json" : partial ? "results-partial.json" : "results.json")
const markdownPath = args.markdown ?? (quick || partial ? undefined : Path.join(PACKAGE_DIR, "RESULTS.md"))
const profileDir = !args.profile && args["profile-dir"] === undefined
  ? undefined
  : Path.resolve(args["profile-dir"] ?? Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-mqtt-prof-")))

const versionOf = (pkg: string): string => {
  try {
    const file = Path.join(PACKAGE_DIR, "node_modules", pkg, "package.json")
    return (JSON.parse(Fs.readFileSync(file, "utf8")) as { version: string }).version
  } catch {
    return "unknown"
  }
}

/** The commit under test (read-only git commands; "unknown" outside a git checkout). */
const commitOf = (): string => {
  try {
    const git = (...gitArgs: Array<string>) =>
      execFileSync("git", gitArgs, { cwd: PACKAGE_DIR, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
    const dirty = git("status", "--porcelain", "--", "../core", "../node") !== ""
    return `${git("rev-parse", "--short", "HEAD")}${dirty ? " + uncommitted changes in core/node" : ""}`
  } catch {
    return "unknown"
  }
}

const log = (text: string) => process.stderr.write(`${text}\n`)

const summaryOf = (m: Measurement, primary: string) => {
  const value = m.metrics[primary]
  const shown = value === undefined ? "–" : value.toLocaleString("en-US", { maximumFractionDigits: 2 })
  return `${primary} ${shown}${m.ok ? "" : `  (! ${m.note ?? "failed"})`}`
}

/** `--from-json`: re-render a saved report (e.g. after editing the hand-written notes of RESULTS.md). */
const render = (file: string): number => {
  const saved = JSON.parse(Fs.readFileSync(file, "utf8")) as Report
  // Targets are recomputed from the measurements, so a changed target definition applies to saved runs too.
  const report: Report = { ...saved, targets: checkTargets(saved.variants, saved.codec) }
  Fs.writeFileSync(file, JSON.stringify(report, null, 2) + "\n")
  process.stdout.write(renderText(report))
  const markdown = args.markdown ?? Path.join(PACKAGE_DIR, "RESULTS.md")
  writeReport(report, { markdown })
  log(`rendered ${file} into ${markdown}`)
  return 0
}

const main = async (): Promise<number> => {
  if (args["from-json"] !== undefined) return render(args["from-json"])
  const startedAt = now()
  const broker: Broker = await startBroker()
  let failures = 0
  try {
    log(`mosquitto ${broker.version} on ${broker.url}${profileDir !== undefined ? `; CPU profiles in ${profileDir}` : ""}`)
    const withC = !args["no-c"] && cClientsAvailable()
    if (!args["no-c"] && !withC) {
      log("mosquitto_pub/mosquitto_sub not found: no C reference (apt-get install mosquitto-clients)")
    }
    let topics = 0
    const context: RunContext = {
      url: broker.url,
      port: broker.port,
      profileDir,
      topic: () => `bench/${process.pid}/${++topics}`,
      sampleBrokerCpu: broker.sampleCpu
    }
    const variants = allVariants(quick).filter((v) => only === undefined || only.some((prefix) => v.id.startsWith(prefix)))
    const results: Array<VariantResult> = []
    for (const variant of variants) {
      const clients = variant.clients.filter((c) => (c !== "c" || withC) && (onlyClients === undefined || onlyClients.includes(c)))
      const runs: Partial<Record<ClientName, Array<Measurement>>> = {}
      for (let round = 1; round <= rounds; round++) {
        for (const client of clients) {
          let measured: Measurement
          try {
            measured = await variant.run(client, context)
          } catch (error) {
            failures++
            measured = { metrics: {}, ok: false, note: error instanceof Error ? error.message : String(error) }
          }
          ;(runs[client] ??= []).push(measured)
          log(`${variant.id} round ${round}/${rounds} ${CLIENT_LABELS[client]}: ${summaryOf(measured, variant.primary)}`)
        }
      }
      results.push(summarize(variant, runs))
    }

    let codec: Report["codec"] = null
    if (!args["no-codec"] && (only === undefined || only.some((prefix) => "codec".startsWith(prefix)))) {
      try {
        codec = codecRows(await runCodec(quick))
        log("codec micro-benchmark done")
      } catch (error) {
        failures++
        log(`codec micro-benchmark failed: ${error instanceof Error ? error.message : String(error)}`)
      }
    }

    const meta: Meta = {
      date: new Date().toISOString(),
      mode: quick ? "quick" : "full",
      rounds,
      node: process.versions.node,
      cpus: `${Os.cpus().length} x ${Os.cpus()[0]?.model.trim() ?? "unknown CPU"}`,
      mosquitto: broker.version,
      mqttjs: versionOf("mqtt"),
      effect: versionOf("effect"),
      commit: commitOf(),
      seconds: (now() - startedAt) / 1000
    }
    const report: Report = { meta, variants: results, codec, targets: checkTargets(results, codec) }
    process.stdout.write(renderText(report))
    writeReport(report, { json: jsonPath, markdown: markdownPath })
    log(`results: ${jsonPath}${markdownPath !== undefined ? `, ${markdownPath}` : ""}`)

    if (profileDir !== undefined) {
      for (const role of ["pub", "sub"]) {
        process.stdout.write(`\neffect-mqtt ${role === "pub" ? "publisher" : "subscriber"}: top self time\n\n`)
        process.stdout.write(`${renderHot(hotFunctions(profileDir, 20, (file) => file.startsWith(`${role}-`)))}\n`)
      }
    }
  } finally {
    await broker.stop()
    killAll()
  }
  return failures === 0 ? 0 : 1
}

main().then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    killAll()
    console.error(error instanceof BenchError ? `bench: ${error.message}` : error)
    process.exitCode = 1
  }
)
