/**
 * MQTT.js's side of every workload, written the way its documentation uses
 * it: `connectAsync`, `publish(topic, payload, { qos }, callback)` with a
 * completion callback per message (the counterpart of our receipt), and the
 * `"message"` event.
 */
import mqtt, { type MqttClient } from "mqtt"
import { latencySummary, makePayload, now, readStamp, send, stampPayload, usage } from "../measure.ts"
import type { PublishResult, PublishSpec, SubscribeResult, SubscribeSpec } from "../protocol.ts"

type Client = MqttClient

const connect = (spec: PublishSpec | SubscribeSpec, name: string): Promise<Client> =>
  mqtt.connectAsync(spec.url, {
    clientId: `bench-mqttjs-${name}-${process.pid}`,
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 0
  })

const end = (client: Client): Promise<void> => new Promise((resolve) => client.end(false, () => resolve()))

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * Counts completion callbacks and lets the publisher wait until fewer than
 * `limit` are outstanding. QoS 0 completes when written (MQTT.js calls back
 * at once, or on "drain"), QoS 1 on PUBACK, QoS 2 on PUBCOMP.
 */
const makeTracker = () => {
  let outstanding = 0
  let waiter: { limit: number; resolve: () => void } | undefined
  let failure: Error | undefined
  const onDone = (error?: Error) => {
    if (error !== undefined && error !== null) failure ??= error
    outstanding--
    if (waiter !== undefined && outstanding < waiter.limit) {
      const { resolve } = waiter
      waiter = undefined
      resolve()
    }
  }
  return {
    onDone,
    started: () => void outstanding++,
    get outstanding() {
      return outstanding
    },
    /** Resolves once fewer than `limit` are outstanding. */
    below: (limit: number): Promise<void> | undefined => {
      if (failure !== undefined) throw failure
      if (outstanding < limit) return undefined
      return new Promise((resolve) => (waiter = { limit, resolve }))
    }
  }
}

const publishAll = async (client: Client, spec: PublishSpec) => {
  const fixed = makePayload(spec.payloadSize)
  const payload = spec.timestamped ? () => stampPayload(spec.payloadSize) : () => fixed
  const options = { qos: spec.qos }
  const tracker = makeTracker()
  const publishOne = () => {
    tracker.started()
    client.publish(spec.topic, payload(), options, tracker.onDone)
  }
  switch (spec.mode.kind) {
    case "window": {
      const size = spec.mode.size
      for (let i = 0; i < spec.count; i++) {
        const wait = tracker.below(size)
        if (wait !== undefined) await wait
        publishOne()
      }
      break
    }
    case "burst":
      for (let i = 0; i < spec.count; i++) publishOne()
      break
    case "paced": {
      // Fire and forget, as MQTT.js applications publish telemetry: a callback per QoS 0 message would add a
      // "drain" listener per message whenever the socket is busy, which collapses at 100,000 msg/s.
      const start = now()
      let sent = 0
      while (sent < spec.count) {
        const due = Math.min(spec.count, Math.floor(((now() - start) * spec.mode.rate) / 1000) + 1)
        for (; sent < due; sent++) {
          if (sent === spec.count - 1) publishOne()
          else client.publish(spec.topic, payload(), options)
        }
        if (sent < spec.count) await sleep(1)
      }
      break
    }
  }
  await tracker.below(1)
}

export const publisher = async (spec: PublishSpec): Promise<PublishResult> => {
  const clients = await Promise.all(Array.from({ length: spec.clients }, (_, i) => connect(spec, `pub${i}`)))
  send({ type: "ready" })
  const firstPublishAt = now()
  await Promise.all(clients.map((client) => publishAll(client, spec)))
  const doneAt = now()
  const published = spec.count * spec.clients
  if (spec.endMarker) {
    // MQTT.js has no bounded publish queue: nothing is ever dropped on this side.
    await clients[0].publishAsync(`${spec.topic}/end`, JSON.stringify({ published, dropped: 0 }), { qos: 1 })
  }
  await Promise.all(clients.map(end))
  return { role: "pub", firstPublishAt, doneAt, published, dropped: 0, ...usage() }
}

/**
 * A fixed-size ring buffer that evicts the oldest entry when full: what an
 * MQTT.js application has to write itself to bound memory behind a slow
 * consumer (the `"message"` event cannot be paused or buffered by the client).
 */
class SlidingBuffer<A> {
  private readonly items: Array<A | undefined>
  private head = 0
  size = 0
  dropped = 0
  constructor(capacity: number) {
    this.items = new Array(capacity)
  }
  push(item: A): void {
    const capacity = this.items.length
    if (this.size === capacity) {
      this.items[this.head] = undefined
      this.head = (this.head + 1) % capacity
      this.size--
      this.dropped++
    }
    this.items[(this.head + this.size) % capacity] = item
    this.size++
  }
  shift(): A | undefined {
    if (this.size === 0) return undefined
    const item = this.items[this.head]
    this.items[this.head] = undefined
    this.head = (this.head + 1) % this.items.length
    this.size--
    return item
  }
}

export const subscriber = async (spec: SubscribeSpec): Promise<SubscribeResult> => {
  const client = await connect(spec, "sub")
  const endTopic = `${spec.topic}/end`
  let received = 0
  let firstReceivedAt = 0
  let lastReceivedAt = 0
  let endMarker: SubscribeResult["end"]
  const latencies = spec.latency && spec.expected !== undefined ? new Float64Array(spec.expected) : undefined
  let finish: () => void = () => {}
  const finished = new Promise<void>((resolve) => (finish = resolve))
  const slow = spec.slow
  const buffer = slow === undefined ? undefined : new SlidingBuffer<Buffer>(slow.bufferSize)

  client.on("message", (topic, payload) => {
    if (topic === endTopic) {
      endMarker = JSON.parse(payload.toString("utf8"))
      return
    }
    if (buffer !== undefined) {
      buffer.push(payload)
      return
    }
    const at = now()
    if (received === 0) firstReceivedAt = at
    if (latencies !== undefined && received < latencies.length) latencies[received] = at - readStamp(payload)
    received++
    lastReceivedAt = at
    if (spec.expected !== undefined && received >= spec.expected) finish()
  })

  // The slow consumer: takes from the buffer at most `rate` messages per second since the first one.
  let consumer: NodeJS.Timeout | undefined
  if (slow !== undefined && buffer !== undefined) {
    consumer = setInterval(() => {
      if (buffer.size === 0) return
      if (received === 0) firstReceivedAt = now()
      const allowance = Math.floor(((now() - firstReceivedAt) * slow.rate) / 1000) + 1
      while (received < allowance && buffer.shift() !== undefined) {
        received++
        lastReceivedAt = now()
      }
    }, 1)
  }

  await client.subscribeAsync(
    slow === undefined ? { [spec.topic]: { qos: spec.qos } } : { [spec.topic]: { qos: spec.qos }, [endTopic]: { qos: 1 } }
  )
  send({ type: "ready" })

  const deadline = now() + spec.timeoutMs
  const drained = () => endMarker !== undefined && buffer !== undefined && buffer.size === 0 && now() - lastReceivedAt > 300
  if (slow === undefined) {
    await Promise.race([finished, sleep(spec.timeoutMs)])
  } else {
    while (!drained() && now() < deadline) await sleep(50)
  }
  if (consumer !== undefined) clearInterval(consumer)
  await end(client)
  const complete = slow === undefined ? spec.expected !== undefined && received >= spec.expected : drained()
  return {
    role: "sub",
    received,
    firstReceivedAt,
    lastReceivedAt,
    complete,
    ...(latencies !== undefined ? { latency: latencySummary(latencies, Math.min(received, latencies.length)) } : {}),
    ...(buffer !== undefined ? { dropped: buffer.dropped, end: endMarker } : {}),
    ...usage()
  }
}
