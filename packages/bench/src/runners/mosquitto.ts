/**
 * The reference: mosquitto's own C clients on the same workloads, where they
 * can run them. `mosquitto_pub -l` publishes one message per line of stdin;
 * `mosquitto_sub -C n` exits after n messages. They run from the orchestrator
 * (no worker process of ours in between), so the timings include piping the
 * lines in and out, which only makes the reference slower, never faster.
 *
 * Knowing when mosquitto_sub is subscribed: a retained "ready" message on a
 * second topic of the same SUBSCRIBE; the broker sends it right after the
 * SUBACK, so its line on stdout means the data topic is subscribed too.
 */
import type * as ChildProcess from "node:child_process"
import { sleep, spawnTracked, stop, within } from "../children.ts"
import { findExecutable, HOST } from "../broker.ts"
import { latencySummary, now } from "../measure.ts"
import type { PublishMode, QoS } from "../protocol.ts"
import type { Measurement, RunContext } from "../workloads/shared.ts"

/** Both C clients are installed (package mosquitto-clients). */
export const cClientsAvailable = (): boolean =>
  findExecutable("mosquitto_pub") !== undefined && findExecutable("mosquitto_sub") !== undefined

export interface CRunOptions {
  readonly qos: QoS
  readonly count: number
  readonly payloadSize: number
  readonly mode: PublishMode
  /** Lines carry their send time; report p50/p99/max instead of the rate. */
  readonly latency: boolean
  readonly timeoutMs: number
}

const exited = (child: ChildProcess.ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once("exit", () => resolve())
  })

/** Runs `mosquitto_pub` to completion with `args` (used for the retained ready marker). */
const pubOnce = async (context: RunContext, args: ReadonlyArray<string>) => {
  const child = spawnTracked("mosquitto_pub", ["-h", HOST, "-p", String(context.port), ...args], { stdio: "ignore" })
  await within(exited(child), 5_000)
  await stop(child)
}

/** One payload line: the send time (when timed) padded with "x" to `size` bytes. */
const line = (size: number, timed: boolean): string => {
  const head = timed ? now().toFixed(3) : ""
  return head + "x".repeat(Math.max(0, size - head.length)) + "\n"
}

export const runC = async (context: RunContext, options: CRunOptions): Promise<Measurement> => {
  const topic = context.topic()
  const readyTopic = `${topic}/ready`
  const broker = ["-h", HOST, "-p", String(context.port)]
  await pubOnce(context, ["-t", readyTopic, "-r", "-m", "ready"])

  const sub = spawnTracked(
    "mosquitto_sub",
    [...broker, "-q", String(options.qos), "-t", readyTopic, "-t", topic, "-C", String(options.count + 1)],
    { stdio: ["ignore", "pipe", "ignore"] }
  )
  let pub: ChildProcess.ChildProcess | undefined
  const brokerCpu = context.sampleBrokerCpu()
  try {
    let lines = 0
    let lastAt = 0
    let partial = ""
    const latencies = options.latency ? new Float64Array(options.count) : undefined
    let subscribed: () => void = () => {}
    const ready = new Promise<void>((resolve) => (subscribed = resolve))
    let finished: () => void = () => {}
    const done = new Promise<void>((resolve) => (finished = resolve))
    sub.stdout?.on("data", (chunk: Buffer) => {
      const at = now()
      if (latencies !== undefined) {
        const text = partial + chunk.toString("latin1")
        const all = text.split("\n")
        partial = all.pop() ?? ""
        for (const entry of all) {
          if (lines > 0 && lines <= latencies.length) latencies[lines - 1] = at - Number.parseFloat(entry)
          lines++
        }
      } else {
        for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines++
      }
      if (lines >= 1) subscribed()
      lastAt = at
      if (lines >= options.count + 1) finished()
    })
    sub.once("exit", () => {
      subscribed()
      finished()
    })
    await within(ready, 5_000)

    const window = options.mode.kind === "window" ? options.mode.size : 1_000
    pub = spawnTracked(
      "mosquitto_pub",
      [...broker, "-q", String(options.qos), "-t", topic, "-l", "-M", String(window)],
      { stdio: ["pipe", "ignore", "ignore"] }
    )
    pub.stdin?.on("error", () => {})
    await sleep(250) // connected by then on loopback; the clock starts at the first line written
    const firstAt = now()
    if (options.mode.kind === "paced") {
      const { rate } = options.mode
      let sent = 0
      while (sent < options.count) {
        const due = Math.min(options.count, Math.floor(((now() - firstAt) * rate) / 1000) + 1)
        let text = ""
        for (; sent < due; sent++) text += line(options.payloadSize, options.latency)
        if (text !== "") pub.stdin?.write(text)
        await sleep(1)
      }
    } else {
      const one = line(options.payloadSize, false)
      // In slices, so a large run does not need one huge string.
      const perWrite = Math.max(1, Math.floor((1 << 20) / one.length))
      for (let sent = 0; sent < options.count; sent += perWrite) {
        pub.stdin?.write(one.repeat(Math.min(perWrite, options.count - sent)))
      }
    }
    await within(done, options.timeoutMs)
    // Only now: at the end of its input mosquitto_pub disconnects even with QoS 1/2 messages still unsent
    // (mosquitto 2.0.11; the broker then logs "disconnected due to out of memory").
    pub.stdin?.end()
    const received = Math.max(0, lines - 1)
    const complete = received >= options.count
    const metrics: Record<string, number> = latencies !== undefined
      ? { ...latencySummary(latencies, Math.min(received, latencies.length)) }
      : { rate: received / ((lastAt - firstAt) / 1000) }
    const brokerBusy = brokerCpu?.busyPercent(firstAt, lastAt)
    if (brokerBusy !== undefined) metrics.brokerBusy = brokerBusy
    return {
      metrics,
      ok: complete,
      note: complete ? undefined : `${received} of ${options.count} messages arrived`
    }
  } finally {
    brokerCpu?.stop()
    if (pub !== undefined) await stop(pub)
    await stop(sub)
    // Cleared only now: mosquitto_sub would have counted the clearing (empty) message as one more line.
    await pubOnce(context, ["-t", readyTopic, "-r", "-n"])
  }
}
