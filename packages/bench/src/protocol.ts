/**
 * What the orchestrator (`main.ts`) and a worker process (`worker.ts`) say to
 * each other. The orchestrator passes one spec as JSON in argv; the worker
 * prints JSON lines prefixed with {@link LINE_PREFIX} on stdout (anything else
 * a library prints there is ignored): `ready` once it can take traffic, then
 * exactly one `result`.
 *
 * Times are wall-clock milliseconds with sub-millisecond precision
 * (`performance.timeOrigin + performance.now()`), so a publisher's "first
 * publish" and a subscriber's "last message" taken in two processes on one
 * machine can be subtracted.
 */

/** The Node clients under test. `"c"` (mosquitto_pub/mosquitto_sub) is run by the orchestrator itself. */
export type NodeClient = "effect" | "mqttjs"
export type ClientName = NodeClient | "c"

export type QoS = 0 | 1 | 2

/** How a publisher issues its messages. */
export type PublishMode =
  /** At most `size` publishes not yet acknowledged (QoS 0: not yet written). */
  | { readonly kind: "window"; readonly size: number }
  /** Every publish call at once, as fast as the API takes them, never waiting for an acknowledgement. */
  | { readonly kind: "burst" }
  /** `rate` messages per second, spread over 1 ms ticks. */
  | { readonly kind: "paced"; readonly rate: number }

export interface PublishSpec {
  readonly role: "pub"
  readonly client: NodeClient
  readonly url: string
  readonly topic: string
  readonly qos: QoS
  /** Messages per client. */
  readonly count: number
  /** Clients in this process, each publishing `count` messages (fan-in); 1 otherwise. */
  readonly clients: number
  readonly payloadSize: number
  readonly mode: PublishMode
  /** The first 8 bytes of each payload carry the send time (float64 LE), for latency. */
  readonly timestamped: boolean
  /** effect-mqtt's publish queue; MQTT.js has no bounded queue and ignores it. */
  readonly queue?: { readonly capacity: number; readonly strategy: "suspend" | "dropping" | "sliding" } | undefined
  /** When done, publish `{ published, dropped }` (QoS 1) on `<topic>/end`: for workloads where drops are expected. */
  readonly endMarker: boolean
  readonly timeoutMs: number
}

export interface SubscribeSpec {
  readonly role: "sub"
  readonly client: NodeClient
  readonly url: string
  readonly topic: string
  readonly qos: QoS
  /** Stop once this many arrived; `undefined`: stop after the publisher's end marker (and the buffer drained). */
  readonly expected: number | undefined
  /** Read the send time from each payload and report latency percentiles. */
  readonly latency: boolean
  /** A consumer slower than the network: at most `rate` messages/s, through a buffer of `bufferSize` with `strategy`. */
  readonly slow?: { readonly rate: number; readonly bufferSize: number; readonly strategy: "sliding" } | undefined
  readonly timeoutMs: number
}

export interface CodecSpec {
  readonly role: "codec"
  /** Packets encoded or decoded per timed sample. */
  readonly packets: number
  /** Timed samples per implementation, alternating ours / bare. */
  readonly rounds: number
}

/**
 * A minimal MQTT peer standing in for the broker, for measuring a client where
 * the broker is not the bottleneck: it acknowledges every PUBLISH it reads
 * and, when the client subscribes, sends it `count` PUBLISH packets.
 */
export interface PeerSpec {
  readonly role: "peer"
  /** PUBLISH packets to send to a client that subscribes (0 for a publisher's peer). */
  readonly count: number
  /** At most this many of them unacknowledged (QoS 0: written as fast as the socket drains). */
  readonly window: number
  readonly payloadSize: number
  readonly timeoutMs: number
}

export type WorkerSpec = PublishSpec | SubscribeSpec | CodecSpec | PeerSpec

/** Resource use of one worker process. */
export interface ProcessUsage {
  /** Peak resident set size, MiB (`process.resourceUsage().maxRSS`). */
  readonly peakRssMiB: number
  /** User + system CPU time, ms. */
  readonly cpuMs: number
}

export interface PublishResult extends ProcessUsage {
  readonly role: "pub"
  /** Just before the first publish call. */
  readonly firstPublishAt: number
  /** Every publish call returned and every message was acknowledged (or written, QoS 0). */
  readonly doneAt: number
  /** Publish calls made. */
  readonly published: number
  /** Dropped by the client's own queue strategy (effect-mqtt `stats.dropped`; MQTT.js has none). */
  readonly dropped: number
  /** effect-mqtt: PUBLISH packets written to the socket (`stats.sent`), for telling where missing messages went. */
  readonly sent?: number | undefined
  /** effect-mqtt: connections made (`stats.connections`): more than one per client means it reconnected. */
  readonly connections?: number | undefined
}

export interface LatencySummary {
  readonly p50: number
  readonly p99: number
  readonly max: number
}

export interface SubscribeResult extends ProcessUsage {
  readonly role: "sub"
  readonly received: number
  readonly firstReceivedAt: number
  readonly lastReceivedAt: number
  /** `expected` messages arrived (or the end marker did) before the timeout. */
  readonly complete: boolean
  readonly latency?: LatencySummary | undefined
  /** Dropped by the subscription buffer (effect-mqtt: `stats.droppedIncoming`; MQTT.js: our ring buffer, `slow` only). */
  readonly dropped?: number | undefined
  /** effect-mqtt: PUBLISH packets the client read from the socket (`stats.received`), delivered or not. */
  readonly decoded?: number | undefined
  /** effect-mqtt: why the subscriber's connection ended, each time it did during the run. */
  readonly disconnects?: ReadonlyArray<string> | undefined
  /** What the publisher said in its end marker. */
  readonly end?: { readonly published: number; readonly dropped: number } | undefined
}

export interface CodecSample {
  /** Nanoseconds per packet, median of the rounds. */
  readonly oursNs: number
  readonly bareNs: number
}

export interface CodecResult extends ProcessUsage {
  readonly role: "codec"
  readonly encodeQos0: CodecSample
  readonly encodeQos1: CodecSample
  readonly decode: CodecSample
}

export interface PeerResult extends ProcessUsage {
  readonly role: "peer"
  /** PUBLISH packets read from the client. */
  readonly publishesReceived: number
  /** PUBLISH packets sent to the client. */
  readonly publishesSent: number
  /** Just before the first PUBLISH was written to the subscribed client (0 when none was). */
  readonly firstSentAt: number
}

export type WorkerMessage =
  /** `port`: where a peer listens. */
  | { readonly type: "ready"; readonly port?: number | undefined }
  | { readonly type: "result"; readonly result: PublishResult | SubscribeResult | CodecResult | PeerResult }
  | { readonly type: "error"; readonly message: string }

export const LINE_PREFIX = "@@bench "
