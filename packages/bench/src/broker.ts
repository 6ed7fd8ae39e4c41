/**
 * The mosquitto broker every run goes through: started once per benchmark on
 * a free port on 127.0.0.1, with a config that sets no limit for the clients
 * to hit (no inflight or queue bounds, see {@link config}). Its CPU is
 * another matter: on two cores it is what sets the rate of workload 1.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { sleep, spawnTracked, stop } from "./children.ts"
import { now } from "./measure.ts"

export const HOST = "127.0.0.1"

export class BenchError extends Error {}

export interface Broker {
  readonly url: string
  readonly port: number
  /** e.g. "2.0.11" */
  readonly version: string
  /** Starts sampling the broker's CPU time (Linux `/proc`; `undefined` elsewhere). */
  readonly sampleCpu: () => CpuSampler | undefined
  readonly stop: () => Promise<void>
}

/**
 * The broker's CPU time (user + system), sampled every 5 ms while a run goes
 * on: how busy it was between two instants of the run tells how much faster
 * any client could have made it go.
 */
export interface CpuSampler {
  /** Percent of one core the broker used between two wall-clock instants (`now()` milliseconds). */
  readonly busyPercent: (from: number, to: number) => number | undefined
  readonly stop: () => void
}

const clockTicksPerSecond = (): number => {
  try {
    return Number(ChildProcess.execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100
  } catch {
    return 100
  }
}

const sampleCpuOf = (pid: number | undefined, ticksPerSecond: number): CpuSampler | undefined => {
  const statPath = `/proc/${pid}/stat`
  if (pid === undefined || !Fs.existsSync(statPath)) return undefined
  /** utime + stime in clock ticks: fields 14 and 15 of /proc/PID/stat, counted after the ")" closing the name. */
  const read = (): number | undefined => {
    try {
      const fields = Fs.readFileSync(statPath, "utf8").split(") ")[1].split(" ")
      return Number(fields[11]) + Number(fields[12])
    } catch {
      return undefined
    }
  }
  const times: Array<number> = []
  const ticks: Array<number> = []
  const sample = () => {
    const value = read()
    if (value === undefined) return
    times.push(now())
    ticks.push(value)
  }
  sample()
  const timer = setInterval(sample, 5)
  /** The last sample at or before `at`. */
  const ticksAt = (at: number) => {
    let found: number | undefined
    for (let i = 0; i < times.length && times[i] <= at; i++) found = ticks[i]
    return found
  }
  return {
    busyPercent: (from, to) => {
      const start = ticksAt(from)
      const end = ticksAt(to)
      if (start === undefined || end === undefined || to <= from) return undefined
      return (((end - start) / ticksPerSecond) * 1000 * 100) / (to - from)
    },
    stop: () => clearInterval(timer)
  }
}

const isExecutable = (file: string): boolean => {
  try {
    Fs.accessSync(file, Fs.constants.X_OK)
    return Fs.statSync(file).isFile()
  } catch {
    return false
  }
}

/** `name` on PATH or in the sbin directories apt and Homebrew install to. */
export const findExecutable = (name: string): string | undefined => {
  const dirs = [...(process.env.PATH ?? "").split(Path.delimiter), "/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin"]
  return dirs.filter((dir) => dir !== "").map((dir) => Path.join(dir, name)).find(isExecutable)
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = Net.createServer()
    server.once("error", reject)
    server.listen(0, HOST, () => {
      const { port } = server.address() as Net.AddressInfo
      server.close(() => resolve(port))
    })
  })

const canConnect = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = Net.connect({ host: HOST, port })
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(1_000, () => done(false))
    socket.once("connect", () => done(true))
    socket.once("error", () => done(false))
  })

/**
 * - `max_inflight_messages 0`: no limit on QoS 1/2 in flight per client (the
 *   default 20 would throttle the 1,000-message window, and mosquitto drops a
 *   3.1.1 client that has more than 20 QoS 2 messages in flight).
 * - `max_queued_messages 0`: no limit on what is queued for a subscriber, so
 *   the broker never drops a message the workloads count.
 * - `set_tcp_nodelay true`: no Nagle delay on the broker's side of latency.
 * - `user root`: mosquitto otherwise drops root privileges to "mosquitto".
 */
const config = (port: number): string =>
  [
    `listener ${port} ${HOST}`,
    "allow_anonymous true",
    "persistence false",
    "max_inflight_messages 0",
    "max_queued_messages 0",
    "set_tcp_nodelay true",
    "log_dest stderr",
    "log_type error",
    "log_type warning",
    ...(process.getuid?.() === 0 ? ["user root"] : []),
    ""
  ].join("\n")

const versionOf = (bin: string): string => {
  const result = ChildProcess.spawnSync(bin, ["-h"], { encoding: "utf8" })
  return /version (\S+)/.exec(`${result.stdout}${result.stderr}`)?.[1] ?? "unknown"
}

export const startBroker = async (): Promise<Broker> => {
  const bin = process.env.MOSQUITTO_BIN || findExecutable("mosquitto")
  if (bin === undefined || !isExecutable(bin)) {
    throw new BenchError(
      "mosquitto was not found (looked in PATH, /usr/sbin, /usr/local/sbin, /opt/homebrew/sbin). " +
        "Install the Debian/Ubuntu package: apt-get install mosquitto mosquitto-clients (or set MOSQUITTO_BIN)."
    )
  }
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-mqtt-bench-"))
  const logPath = Path.join(dir, "mosquitto.log")
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort()
    Fs.writeFileSync(Path.join(dir, "mosquitto.conf"), config(port))
    const log = Fs.openSync(logPath, "w")
    const child = spawnTracked(bin, ["-c", Path.join(dir, "mosquitto.conf")], { stdio: ["ignore", log, log] })
    Fs.closeSync(log)
    const deadline = Date.now() + 5_000
    while (child.exitCode === null && Date.now() < deadline && !(await canConnect(port))) await sleep(50)
    if (child.exitCode === null && (await canConnect(port))) {
      const ticksPerSecond = clockTicksPerSecond()
      return {
        url: `mqtt://${HOST}:${port}`,
        port,
        version: versionOf(bin),
        sampleCpu: () => sampleCpuOf(child.pid, ticksPerSecond),
        stop: async () => {
          await stop(child, 2_000)
          Fs.rmSync(dir, { recursive: true, force: true })
        }
      }
    }
    await stop(child)
    const tail = Fs.readFileSync(logPath, "utf8")
    if (!tail.includes("Address already in use") || attempt === 3) {
      Fs.rmSync(dir, { recursive: true, force: true })
      throw new BenchError(`mosquitto (${bin}) did not start on ${HOST}:${port}:\n${tail}`)
    }
  }
  throw new BenchError("unreachable")
}
