/**
 * What a workload is, and the run shape most of them share: a subscriber
 * process, then a publisher process, of the same client; the rate is the
 * messages received over the time from the publisher's first publish to the
 * subscriber's last message.
 */
import type { CpuSampler } from "../broker.ts"
import type { ClientName, NodeClient, PublishResult, PublishSpec, QoS, SubscribeResult, SubscribeSpec } from "../protocol.ts"
import { startWorker } from "../workers.ts"

/** One reported number of a workload. */
export interface Metric {
  readonly key: string
  readonly label: string
  readonly unit: string
  /** "neither": context for reading the others (the broker's load), not a score. */
  readonly better: "higher" | "lower" | "neither"
  readonly digits?: number
}

/** One run of one client: its numbers, and whether it ran as specified (everything arrived, counts balance…). */
export interface Measurement {
  readonly metrics: Readonly<Record<string, number>>
  readonly ok: boolean
  readonly note?: string | undefined
}

export interface RunContext {
  readonly url: string
  readonly port: number
  /** Directory for `--cpu-prof` profiles of effect-mqtt's workers, when profiling. */
  readonly profileDir: string | undefined
  /** A topic no other run uses. */
  readonly topic: () => string
  /** Starts sampling the broker's CPU time, where the platform allows. */
  readonly sampleBrokerCpu: () => CpuSampler | undefined
}

export interface Variant {
  /** Stable id, e.g. `w1-qos1`: JSON key and `--only` filter. */
  readonly id: string
  /** The workload number in issue 6. */
  readonly workload: number
  readonly title: string
  readonly metrics: ReadonlyArray<Metric>
  /** The metric the ratio effect-mqtt / MQTT.js is taken of. */
  readonly primary: string
  /** Clients that run it, in round order (effect-mqtt, MQTT.js, then the C clients when they can). */
  readonly clients: ReadonlyArray<ClientName>
  readonly run: (client: ClientName, context: RunContext) => Promise<Measurement>
}

export const RATE: Metric = { key: "rate", label: "msg/s", unit: "msg/s", better: "higher", digits: 0 }

/**
 * How much of one core mosquitto used from the first publish to the last
 * message received. A single-threaded broker cannot go past 100 %: at B %
 * busy in MQTT.js's runs, and the broker's CPU per message unchanged, no
 * client could beat MQTT.js by more than 100 / B.
 */
export const BROKER_BUSY: Metric = {
  key: "brokerBusy",
  label: "mosquitto CPU, % of a core",
  unit: "%",
  better: "neither",
  digits: 0
}

/** Runs a subscriber then a publisher of `client`; both processes are gone when it returns. */
export const runPair = async (
  context: RunContext,
  client: NodeClient,
  sub: Omit<SubscribeSpec, "role" | "client" | "url">,
  pub: Omit<PublishSpec, "role" | "client" | "url">
): Promise<{ readonly sub: SubscribeResult; readonly pub: PublishResult }> => {
  const profileDir = client === "effect" ? context.profileDir : undefined
  const hardLimit = Math.max(sub.timeoutMs, pub.timeoutMs) + 15_000
  const subscriber = startWorker<SubscribeResult>(
    { role: "sub", client, url: context.url, ...sub },
    { timeoutMs: hardLimit, profileDir }
  )
  try {
    await subscriber.ready
    const publisher = startWorker<PublishResult>(
      { role: "pub", client, url: context.url, ...pub },
      { timeoutMs: hardLimit, profileDir }
    )
    try {
      const [pubResult, subResult] = await Promise.all([publisher.result, subscriber.result])
      return { sub: subResult, pub: pubResult }
    } finally {
      await publisher.finish(profileDir !== undefined ? 10_000 : 2_000)
    }
  } finally {
    await subscriber.finish(profileDir !== undefined ? 10_000 : 2_000)
  }
}

/** Messages per second from the first publish to the last message received. */
export const rateOf = (pub: PublishResult, sub: SubscribeResult): number =>
  sub.received / ((sub.lastReceivedAt - pub.firstPublishAt) / 1000)

export interface ThroughputOptions {
  readonly qos: QoS
  /** Messages per publishing client. */
  readonly count: number
  readonly clients?: number
  readonly payloadSize: number
  readonly mode: PublishSpec["mode"]
  readonly timeoutMs: number
}

/** A Node client's throughput run: msg/s, ok when every message arrived. */
export const nodeThroughput = async (
  context: RunContext,
  client: NodeClient,
  options: ThroughputOptions
): Promise<Measurement> => {
  const topic = context.topic()
  const clients = options.clients ?? 1
  const expected = options.count * clients
  const brokerCpu = context.sampleBrokerCpu()
  const { pub, sub } = await runPair(
    context,
    client,
    { topic, qos: options.qos, expected, latency: false, timeoutMs: options.timeoutMs },
    {
      topic,
      qos: options.qos,
      count: options.count,
      clients,
      payloadSize: options.payloadSize,
      mode: options.mode,
      timestamped: false,
      endMarker: false,
      timeoutMs: options.timeoutMs
    }
  ).finally(() => brokerCpu?.stop())
  const brokerBusy = brokerCpu?.busyPercent(pub.firstPublishAt, sub.lastReceivedAt)
  return {
    metrics: {
      rate: rateOf(pub, sub),
      ...(brokerBusy !== undefined ? { brokerBusy } : {}),
      pubCpuMs: pub.cpuMs,
      subCpuMs: sub.cpuMs,
      pubPeakRssMiB: pub.peakRssMiB,
      subPeakRssMiB: sub.peakRssMiB
    },
    ok: sub.complete,
    note: sub.complete
      ? undefined
      : `${sub.received} of ${expected} messages arrived${sub.dropped ? `, ${sub.dropped} dropped by the subscription buffer` : ""}` +
        (sub.decoded !== undefined ? `, ${sub.decoded} read by the subscriber` : "") +
        (pub.sent !== undefined ? `, ${pub.sent} written by the publisher (${pub.connections} connection(s))` : "") +
        (sub.disconnects !== undefined && sub.disconnects.length > 0 ? `; subscriber disconnected: ${sub.disconnects.join(" | ")}` : "")
  }
}
