/**
 * Turning runs into results: medians per client, the ratio effect-mqtt /
 * MQTT.js, the issue's targets, and the same tables as text (console), JSON
 * and Markdown (RESULTS.md).
 */
import * as Fs from "node:fs"
import { median } from "./measure.ts"
import type { ClientName, CodecResult, CodecSample } from "./protocol.ts"
import { BURST_LARGE, BURST_SMALL } from "./workloads/burst.ts"
import { CLIENT_BOUND_PREFIX } from "./workloads/clientBound.ts"
import type { Measurement, Metric, Variant } from "./workloads/shared.ts"

export interface Meta {
  readonly date: string
  readonly mode: "full" | "quick"
  readonly rounds: number
  readonly node: string
  readonly cpus: string
  readonly mosquitto: string
  readonly mqttjs: string
  readonly effect: string
  /** The commit measured, with "+ uncommitted changes" when packages/core or packages/node differ from it. */
  readonly commit: string
  readonly seconds: number
}

export interface VariantResult {
  readonly id: string
  readonly workload: number
  readonly title: string
  readonly primary: string
  readonly metrics: ReadonlyArray<Metric>
  /** Every run, in round order, per client. */
  readonly runs: Partial<Record<ClientName, ReadonlyArray<Measurement>>>
  /** Median of each metric over the runs, per client. */
  readonly medians: Partial<Record<ClientName, Readonly<Record<string, number>>>>
  /** effect-mqtt / MQTT.js of the primary metric's medians. */
  readonly ratio: number | null
}

export interface CodecRow extends CodecSample {
  readonly path: string
  /** ours / bare */
  readonly overhead: number
}

export interface Target {
  readonly target: string
  readonly measured: string
  readonly met: boolean
}

export interface Report {
  readonly meta: Meta
  readonly variants: ReadonlyArray<VariantResult>
  readonly codec: ReadonlyArray<CodecRow> | null
  readonly targets: ReadonlyArray<Target>
}

export const CLIENT_LABELS: Record<ClientName, string> = {
  effect: "effect-mqtt",
  mqttjs: "MQTT.js",
  c: "mosquitto_pub/sub (C)"
}

export const summarize = (variant: Variant, runs: Partial<Record<ClientName, Array<Measurement>>>): VariantResult => {
  const medians: Partial<Record<ClientName, Record<string, number>>> = {}
  for (const [client, measurements] of Object.entries(runs) as Array<[ClientName, Array<Measurement>]>) {
    const keys = new Set(measurements.flatMap((m) => Object.keys(m.metrics)))
    const values: Record<string, number> = {}
    for (const key of keys) {
      values[key] = median(measurements.map((m) => m.metrics[key]).filter((v): v is number => Number.isFinite(v)))
    }
    medians[client] = values
  }
  const ours = medians.effect?.[variant.primary]
  const theirs = medians.mqttjs?.[variant.primary]
  return {
    id: variant.id,
    workload: variant.workload,
    title: variant.title,
    primary: variant.primary,
    metrics: variant.metrics,
    runs,
    medians,
    ratio: ours !== undefined && theirs !== undefined && theirs !== 0 ? ours / theirs : null
  }
}

export const codecRows = (codec: CodecResult): Array<CodecRow> => {
  const row = (path: string, sample: CodecSample): CodecRow => ({ path, ...sample, overhead: sample.oursNs / sample.bareNs })
  return [
    row("encode PUBLISH QoS 0, 64 B (preparePublish vs generate)", codec.encodeQos0),
    row("encode PUBLISH QoS 1, 64 B (preparePublish vs generate)", codec.encodeQos1),
    row("decode PUBLISH QoS 1, 64 B, 64 KiB reads (makeDecoder vs parser)", codec.decode)
  ]
}

// -----------------------------------------------------------------------------
// Targets (issue 6)
// -----------------------------------------------------------------------------

const fmtRatio = (value: number | undefined | null) =>
  value === undefined || value === null || !Number.isFinite(value) ? "n/a" : `${value.toFixed(2)}x`

/**
 * For a run through mosquitto: how busy it was in MQTT.js's runs, and so the
 * most any client could gain while the broker's CPU per message stays what it
 * was (it does not depend on the clients at QoS 1; at QoS 0 a C subscriber
 * makes it ~25 % cheaper than either Node subscriber, see RESULTS.md).
 */
const brokerBound = (v: VariantResult): string => {
  const busy = v.medians.mqttjs?.brokerBusy
  if (busy === undefined || !Number.isFinite(busy) || busy <= 0 || v.id.startsWith(CLIENT_BOUND_PREFIX)) return ""
  return ` (mosquitto ${busy.toFixed(0)} % busy in MQTT.js's runs: at its cost per message there, at most ${(100 / busy).toFixed(2)}x for any client)`
}

export const checkTargets = (variants: ReadonlyArray<VariantResult>, codec: ReadonlyArray<CodecRow> | null): Array<Target> => {
  const byId = new Map(variants.map((v) => [v.id, v]))
  const targets: Array<Target> = []
  for (const v of variants.filter((v) => v.workload === 1)) {
    targets.push({
      target: v.id.startsWith(CLIENT_BOUND_PREFIX)
        ? `workload 1 as the client's own rate (our addition), ${v.title}: effect-mqtt >= 1.5x MQTT.js`
        : `workload 1, ${v.title}: effect-mqtt >= 1.5x MQTT.js`,
      measured: fmtRatio(v.ratio) + brokerBound(v),
      met: v.ratio !== null && v.ratio >= 1.5
    })
  }
  const small = byId.get(BURST_SMALL)
  const large = byId.get(BURST_LARGE)
  if (small !== undefined && large !== undefined) {
    const linear = (large.medians.effect?.rate ?? Number.NaN) / (small.medians.effect?.rate ?? Number.NaN)
    targets.push({
      target: `workload 2: effect-mqtt's rate at ${titleCount(large)} >= 0.8x its rate at ${titleCount(small)}`,
      measured: fmtRatio(linear),
      met: linear >= 0.8
    })
    const vsC = (large.medians.effect?.rate ?? Number.NaN) / (large.medians.c?.rate ?? Number.NaN)
    targets.push({
      target: `workload 2: effect-mqtt's rate at ${titleCount(large)} >= 0.5x the C clients'`,
      measured: fmtRatio(vsC),
      met: vsC >= 0.5
    })
  }
  const latency = byId.get("w3-latency")
  if (latency !== undefined) {
    const ours = latency.medians.effect?.p99 ?? Number.NaN
    const theirs = latency.medians.mqttjs?.p99 ?? Number.NaN
    targets.push({
      target: "workload 3: p99 latency no worse than MQTT.js",
      measured: `${ours.toFixed(2)} ms vs ${theirs.toFixed(2)} ms (${fmtRatio(ours / theirs)})`,
      met: ours <= theirs
    })
  }
  const memory = byId.get("w6-memory")
  if (memory !== undefined) {
    const runs = memory.runs.effect ?? []
    // The issue's targets are medians of one run; "every run" is our own, stricter check.
    const median = memory.medians.effect?.peakRssMiB ?? Number.NaN
    targets.push({
      target: "workload 6: effect-mqtt's peak RSS < 150 MB (median of the rounds, the larger of publisher and subscriber)",
      measured: `${median.toFixed(1)} MiB (${(median * 1.048576).toFixed(1)} MB)`,
      met: median * 1.048576 < 150
    })
    const peak = Math.max(...runs.map((r) => r.metrics.peakRssMiB ?? Number.NaN))
    targets.push({
      target: "workload 6, stricter: effect-mqtt's peak RSS < 150 MB in every run, publisher and subscriber",
      measured: `${peak.toFixed(1)} MiB (${(peak * 1.048576).toFixed(1)} MB)`,
      met: peak * 1.048576 < 150
    })
    const exact = runs.length > 0 && runs.every((r) => r.ok && r.metrics.unaccounted === 0)
    targets.push({
      target: "workload 6: dropped + received = published exactly (every run)",
      measured: runs.map((r) => `${r.metrics.unaccounted ?? "?"} unaccounted${r.ok ? "" : ` (${r.note})`}`).join(", "),
      met: exact
    })
  }
  for (const row of codec ?? []) {
    targets.push({ target: `codec: ${row.path} overhead < 1.3x`, measured: fmtRatio(row.overhead), met: row.overhead < 1.3 })
  }
  return targets
}

const titleCount = (v: VariantResult) => /([\d,]+) msgs/.exec(v.title)?.[1] ?? v.id

// -----------------------------------------------------------------------------
// Rendering
// -----------------------------------------------------------------------------

const fmt = (value: number | undefined, digits = 0): string =>
  value === undefined || !Number.isFinite(value)
    ? "–"
    : value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string =>
  [
    `| ${header.join(" | ")} |`,
    `|${header.map(() => "---").join("|")}|`,
    ...rows.map((row) => `| ${row.join(" | ")} |`)
  ].join("\n")

/** A "!" after a median whose runs did not all complete as specified. */
const flag = (v: VariantResult, client: ClientName) => (v.runs[client] ?? []).some((r) => !r.ok) ? " !" : ""

export const resultsTable = (variants: ReadonlyArray<VariantResult>): string => {
  const rows: Array<Array<string>> = []
  for (const v of variants) {
    const shown = v.metrics.filter((m) =>
      m.key === v.primary || m.key === "brokerBusy" || v.workload === 3 || v.workload === 4 || v.workload === 6
    )
    for (const m of shown) {
      const ours = v.medians.effect?.[m.key]
      const theirs = v.medians.mqttjs?.[m.key]
      const ratio = ours !== undefined && theirs !== undefined && theirs !== 0 ? ours / theirs : undefined
      rows.push([
        m.key === shown[0].key ? `${v.workload}. ${v.title}` : "",
        `${m.label}${m.better === "lower" ? " (lower is better)" : ""}`,
        fmt(ours, m.digits) + flag(v, "effect"),
        fmt(theirs, m.digits) + flag(v, "mqttjs"),
        ratio === undefined || m.key === "unaccounted" || m.key === "received" || m.key === "dropped" || m.key === "brokerBusy"
          ? "–"
          : `**${ratio.toFixed(2)}x**`,
        v.runs.c === undefined ? "–" : fmt(v.medians.c?.[m.key], m.digits) + flag(v, "c")
      ])
    }
  }
  return table(["workload", "metric", "effect-mqtt", "MQTT.js", "effect-mqtt / MQTT.js", "mosquitto_pub/sub (C)"], rows)
}

export const codecTable = (rows: ReadonlyArray<CodecRow>): string =>
  table(
    ["path", "effect-mqtt ns/packet", "bare mqtt-packet ns/packet", "overhead"],
    rows.map((r) => [r.path, fmt(r.oursNs, 1), fmt(r.bareNs, 1), `**${r.overhead.toFixed(2)}x**`])
  )

export const targetsTable = (targets: ReadonlyArray<Target>): string =>
  table(["target", "measured", "met"], targets.map((t) => [t.target, t.measured, t.met ? "yes" : "**no**"]))

/** Every run's primary number, so the spread behind each median is visible. */
export const roundsTable = (variants: ReadonlyArray<VariantResult>): string => {
  const rows: Array<Array<string>> = []
  for (const v of variants) {
    const metric = v.metrics.find((m) => m.key === v.primary)
    for (const [client, runs] of Object.entries(v.runs) as Array<[ClientName, Array<Measurement>]>) {
      rows.push([
        v.id,
        CLIENT_LABELS[client],
        metric?.label ?? v.primary,
        runs.map((r) => fmt(r.metrics[v.primary], metric?.digits) + (r.ok ? "" : ` (! ${r.note ?? "failed"})`)).join(", ")
      ])
    }
  }
  return table(["workload", "client", "metric", "runs, in order"], rows)
}

const metaLine = (meta: Meta) =>
  `${meta.date}, ${meta.mode} mode, ${meta.rounds} round(s) alternating effect-mqtt / MQTT.js / C per workload, ` +
  `${meta.seconds.toFixed(0)} s. Node ${meta.node}, ${meta.cpus}, mosquitto ${meta.mosquitto}, MQTT.js ${meta.mqttjs}, ` +
  `effect ${meta.effect}, effect-mqtt at ${meta.commit}.`

export const renderText = (report: Report): string =>
  [
    "",
    metaLine(report.meta),
    "",
    resultsTable(report.variants),
    "",
    ...(report.codec !== null ? [codecTable(report.codec), ""] : []),
    targetsTable(report.targets),
    "",
    ...(anyFlagged(report) ? ["! = at least one run did not complete as specified (see the JSON for its note).", ""] : [])
  ].join("\n")

const anyFlagged = (report: Report) =>
  report.variants.some((v) => Object.values(v.runs).some((runs) => runs.some((r) => !r.ok)))

/** Everything below this marker in RESULTS.md is written by hand and kept when the file is regenerated. */
const NOTES_MARKER = "<!-- Hand-written notes below this line are kept when the benchmark rewrites this file. -->"

export const renderMarkdown = (report: Report, previous: string | undefined): string => {
  const notesAt = previous?.indexOf(NOTES_MARKER) ?? -1
  const notes = previous !== undefined && notesAt >= 0 ? previous.slice(notesAt + NOTES_MARKER.length).trimStart() : ""
  return [
    "# effect-mqtt benchmark results",
    "",
    "Generated by `npm run bench` (packages/bench). Ratios are effect-mqtt / MQTT.js, medians of the rounds; for",
    "msg/s higher is better, for latency and memory lower is better. The machine is shared and noisy: compare the",
    "ratios of one run, not absolutes across runs.",
    "",
    metaLine(report.meta),
    "",
    "## Workloads",
    "",
    resultsTable(report.variants),
    "",
    ...(anyFlagged(report) ? ["! = at least one run did not complete as specified (see the runs below).", ""] : []),
    ...(report.codec !== null ? ["## Codec micro-benchmark", "", codecTable(report.codec), ""] : []),
    "## Targets (issue 6)",
    "",
    targetsTable(report.targets),
    "",
    "## Every run",
    "",
    roundsTable(report.variants),
    "",
    NOTES_MARKER,
    "",
    notes
  ].join("\n")
}

export const writeReport = (report: Report, paths: { readonly json?: string | undefined; readonly markdown?: string | undefined }) => {
  if (paths.json !== undefined) Fs.writeFileSync(paths.json, `${JSON.stringify(report, null, 2)}\n`)
  if (paths.markdown !== undefined) {
    const previous = Fs.existsSync(paths.markdown) ? Fs.readFileSync(paths.markdown, "utf8") : undefined
    Fs.writeFileSync(paths.markdown, renderMarkdown(report, previous))
  }
}
