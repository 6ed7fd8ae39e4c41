/**
 * Scoped mosquitto brokers for integration tests: every broker gets its own
 * free port on 127.0.0.1, its own temp dir (config, log, persistence) and is
 * killed (SIGTERM, then SIGKILL after 2 s) when the scope closes.
 *
 * Policy: a missing mosquitto is a test FAILURE, in CI and locally. Nothing in
 * here skips.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Effect, Schema } from "effect"
import type { Scope } from "effect"
import { canConnect, freePort, sleepReal } from "./net.js"

/** mosquitto (or one of its command line clients) is missing or did not start. */
export class MosquittoUnavailable extends Schema.TaggedError<MosquittoUnavailable>()("MosquittoUnavailable", {
  message: Schema.String
}) {}

/** What a `config` function gets to write its lines: the ports and the broker's temp dir. */
export interface ConfigContext {
  /** The main listener's port (`listener PORT 127.0.0.1`, plain MQTT), already in the config. */
  readonly port: number
  /** `extraPorts` free ports for more listeners (TLS, WebSocket...). */
  readonly ports: ReadonlyArray<number>
  /** The broker's temp dir (e.g. for a unix socket: `listener 0 ${dir}/mqtt.sock`). */
  readonly dir: string
}

/** Options of {@link start}. */
export interface StartOptions {
  /**
   * Extra lines appended to the generated mosquitto.conf; a function gets the
   * ports and temp dir (it is called again when ports are picked again).
   */
  readonly config?: string | ((context: ConfigContext) => string)
  /** How many extra free ports on 127.0.0.1 to pick for `config` (default 0); see `Broker.ports`. */
  readonly extraPorts?: number
  /** Enable persistence (`persistence_location` in the broker's temp dir). */
  readonly persistence?: boolean
  /** Fixed port; by default a free port on 127.0.0.1 is picked. */
  readonly port?: number
  /** Path of the mosquitto binary; default: $MOSQUITTO_BIN, then PATH, then the usual sbin dirs. */
  readonly bin?: string
}

/** A running mosquitto owned by the current scope. */
export interface Broker {
  readonly url: string
  readonly host: "127.0.0.1"
  readonly port: number
  /** The extra ports (`extraPorts`), as given to `config`. */
  readonly ports: ReadonlyArray<number>
  /** Temp dir holding mosquitto.conf, mosquitto.log and the persistence db. */
  readonly dir: string
  /**
   * Sends `signal` (default SIGTERM). For terminating signals it waits for the
   * exit (SIGKILL after 2 s); SIGSTOP/SIGCONT/SIGHUP/SIGUSR1/SIGUSR2 are only sent.
   */
  readonly kill: (signal?: NodeJS.Signals) => Effect.Effect<void>
  /** Stops the broker if it runs, then starts it again on the same port with the same config. */
  readonly restart: Effect.Effect<void, MosquittoUnavailable>
  /** The broker log so far (stdout and stderr of every run). */
  readonly log: Effect.Effect<string>
}

const HOST = "127.0.0.1" as const
const READY_TIMEOUT_MS = 5_000
const KILL_GRACE_MS = 2_000
const NON_TERMINATING = new Set<string>(["SIGSTOP", "SIGCONT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGTSTP"])

const isExecutable = (file: string): boolean => {
  try {
    Fs.accessSync(file, Fs.constants.X_OK)
    return Fs.statSync(file).isFile()
  } catch {
    return false
  }
}

const findBinary = (explicit: string | undefined): string | undefined => {
  const configured = explicit ?? process.env.MOSQUITTO_BIN
  if (configured !== undefined && configured !== "") return isExecutable(configured) ? configured : undefined
  const dirs = [...(process.env.PATH ?? "").split(Path.delimiter), "/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin"]
  return dirs.filter((dir) => dir !== "").map((dir) => Path.join(dir, "mosquitto")).find(isExecutable)
}

const readLog = (file: string, from = 0): string => {
  try {
    return Fs.readFileSync(file).subarray(from).toString("utf8")
  } catch {
    return ""
  }
}

const readTail = (file: string, lines = 30): string =>
  readLog(file).trimEnd().split("\n").slice(-lines).join("\n") || "(empty log)"

const renderConfig = (port: number, ports: ReadonlyArray<number>, dir: string, options: StartOptions): string =>
  [
    `listener ${port} ${HOST}`,
    "allow_anonymous true",
    "log_dest stderr", // unbuffered, unlike stdout; both go to mosquitto.log
    "log_type error",
    "log_type warning",
    "log_type notice",
    "log_type information",
    "log_type subscribe",
    "log_type unsubscribe",
    "log_timestamp_format %H:%M:%S",
    ...(options.persistence === true ? ["persistence true", `persistence_location ${dir}${Path.sep}`] : []),
    // mosquitto drops root privileges to user "mosquitto" unless told otherwise,
    // which could then not write into our 0700 temp dir.
    ...(process.getuid?.() === 0 ? ["user root"] : []),
    typeof options.config === "function" ? options.config({ port, ports, dir }) : options.config ?? "",
    ""
  ].join("\n")

// Last resort when a test worker exits without closing its scopes (vitest stops
// its fork workers with SIGTERM): SIGKILL the brokers we started. The set lives
// on globalThis so that re-imports (one per test file) share one set of listeners.
const trackChildren = (): Set<ChildProcess.ChildProcess> => {
  const children = new Set<ChildProcess.ChildProcess>()
  const killAll = () => children.forEach((child) => child.kill("SIGKILL"))
  const onSignal = (signal: NodeJS.Signals) => {
    killAll()
    process.off(signal, onSignal)
    // Keep the default behaviour (terminate) unless someone else handles the signal.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
  }
  process.once("exit", killAll)
  process.once("SIGTERM", onSignal)
  process.once("SIGINT", onSignal)
  return children
}
const registry = globalThis as { [key: symbol]: Set<ChildProcess.ChildProcess> | undefined }
const live = (registry[Symbol.for("effect-mqtt/test/mosquitto-children")] ??= trackChildren())

const isRunning = (child: ChildProcess.ChildProcess): boolean =>
  child.pid !== undefined && child.exitCode === null && child.signalCode === null

/** Resolves once `child` exited (or never started), or after `ms`; true when it exited. */
const waitExit = (child: ChildProcess.ChildProcess, ms: number): Effect.Effect<boolean> =>
  Effect.callback<boolean>((resume) => {
    if (!isRunning(child)) return resume(Effect.succeed(true))
    const done = (exited: boolean) => {
      clearTimeout(timer)
      child.off("exit", onExit)
      resume(Effect.succeed(exited))
    }
    const onExit = () => done(true)
    const timer = setTimeout(() => done(!isRunning(child)), ms)
    child.once("exit", onExit)
    return Effect.sync(() => done(false))
  })

/** SIGTERM (or `signal`), then SIGKILL after the grace period; waits for the exit. */
const terminate = (child: ChildProcess.ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (!isRunning(child)) return
    child.kill("SIGCONT") // in case a test stopped it
    child.kill(signal)
    if (yield* waitExit(child, KILL_GRACE_MS)) return
    child.kill("SIGKILL")
    yield* waitExit(child, KILL_GRACE_MS)
  })

/**
 * Starts a mosquitto broker on 127.0.0.1 for the lifetime of the current scope.
 * Fails with {@link MosquittoUnavailable} (including the log tail) when the
 * binary is missing or the broker does not accept connections within 5 s.
 */
export const start = (options: StartOptions = {}): Effect.Effect<Broker, MosquittoUnavailable, Scope.Scope> =>
  Effect.gen(function*() {
    const bin = findBinary(options.bin)
    if (bin === undefined) {
      return yield* new MosquittoUnavailable({
        message: `mosquitto binary not found (${options.bin ?? process.env.MOSQUITTO_BIN ?? "searched PATH, /usr/sbin, /usr/local/sbin, /opt/homebrew/sbin"}). ` +
          "Install it (apt-get install mosquitto mosquitto-clients) or set MOSQUITTO_BIN."
      })
    }
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-mqtt-mosquitto-"))),
      (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
    )
    const confPath = Path.join(dir, "mosquitto.conf")
    const logPath = Path.join(dir, "mosquitto.log")
    let child: ChildProcess.ChildProcess | undefined
    yield* Effect.addFinalizer(() => child === undefined ? Effect.void : terminate(child))

    const unavailable = (reason: string) =>
      new MosquittoUnavailable({ message: `mosquitto (${bin}) ${reason}\n--- ${logPath} (tail) ---\n${readTail(logPath)}` })

    const launch = (port: number, ports: ReadonlyArray<number>): Effect.Effect<void, MosquittoUnavailable> =>
      Effect.gen(function*() {
        if (child !== undefined) yield* terminate(child)
        Fs.writeFileSync(confPath, renderConfig(port, ports, dir, options))
        const fd = Fs.openSync(logPath, "a")
        const logOffset = Fs.fstatSync(fd).size
        let spawnError: Error | undefined
        try {
          const spawned = ChildProcess.spawn(bin, ["-c", confPath], { stdio: ["ignore", fd, fd] })
          spawned.once("error", (error) => (spawnError = error))
          live.add(spawned)
          spawned.once("exit", () => live.delete(spawned))
          child = spawned
        } finally {
          Fs.closeSync(fd)
        }
        const proc = child
        // Ready = this run logged "running" (all listeners bound) and the port accepts
        // connections; the log check guards against another process owning the port.
        const deadline = Date.now() + READY_TIMEOUT_MS
        let ready = false
        while (!ready && isRunning(proc) && spawnError === undefined && Date.now() < deadline) {
          ready = / running$/m.test(readLog(logPath, logOffset)) && (yield* canConnect(HOST, port))
          if (!ready) yield* sleepReal(50)
        }
        if (spawnError !== undefined || proc.pid === undefined) {
          return yield* unavailable(`could not be spawned: ${spawnError?.message ?? "no pid"}`)
        }
        if (!isRunning(proc)) return yield* unavailable(`exited during startup (code ${proc.exitCode}, signal ${proc.signalCode})`)
        if (!ready) {
          yield* terminate(proc)
          return yield* unavailable(`did not accept connections on ${HOST}:${port} within ${READY_TIMEOUT_MS} ms`)
        }
      })

    // A picked port can be taken by someone else before mosquitto binds it: retry with a new one.
    const pickExtra = (taken: number) =>
      Effect.gen(function*() {
        const picked: Array<number> = []
        while (picked.length < (options.extraPorts ?? 0)) {
          const candidate = yield* freePort
          if (candidate !== taken && !picked.includes(candidate)) picked.push(candidate)
        }
        return picked
      })
    let port = options.port ?? (yield* freePort)
    let ports = yield* pickExtra(port)
    for (let attempt = 1;; attempt++) {
      const result = yield* Effect.result(launch(port, ports))
      if (result._tag === "Success") break
      const inUse = readTail(logPath, 5).includes("Address already in use")
      if (!inUse || attempt >= 3) return yield* Effect.fail(result.failure)
      if (options.port === undefined) port = yield* freePort
      else if ((options.extraPorts ?? 0) === 0) return yield* Effect.fail(result.failure)
      ports = yield* pickExtra(port)
    }

    return {
      url: `mqtt://${HOST}:${port}`,
      host: HOST,
      port,
      ports,
      dir,
      kill: (signal: NodeJS.Signals = "SIGTERM") =>
        Effect.suspend(() => {
          const proc = child
          if (proc === undefined || !isRunning(proc)) return Effect.void
          if (NON_TERMINATING.has(signal)) return Effect.sync(() => void proc.kill(signal))
          return terminate(proc, signal)
        }),
      restart: Effect.suspend(() => launch(port, ports)),
      log: Effect.sync(() => readLog(logPath))
    } satisfies Broker
  })

/**
 * Test policy: mosquitto is required. Turns {@link MosquittoUnavailable} into a
 * defect so the test fails loudly (never skips), in CI (`CI=true`) and locally.
 */
export const requireBroker = <A, E, R>(
  self: Effect.Effect<A, E | MosquittoUnavailable, R>
): Effect.Effect<A, Exclude<E, MosquittoUnavailable>, R> =>
  Effect.catchTag(self as Effect.Effect<A, MosquittoUnavailable, R>, "MosquittoUnavailable", (error) =>
    Effect.die(
      new Error(
        `${error.message}\n` +
          (process.env.CI === "true"
            ? "CI=true: mosquitto is required; .ci/run installs it with apt-get (mosquitto mosquitto-clients)."
            : "mosquitto is required to run these tests (they are never skipped); install mosquitto and mosquitto-clients.")
      )
    )) as Effect.Effect<A, Exclude<E, MosquittoUnavailable>, R>

/** Result of a mosquitto_pub / mosquitto_sub run. */
export interface ClientResult {
  readonly stdout: Buffer
  readonly stderr: string
  /** Exit code; null when the process was killed (see `signal`). */
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/** Options of {@link mosquittoPub} / {@link mosquittoSub}. */
export interface ClientOptions {
  /** Hard limit; the process is SIGKILLed after it (default 10 s). */
  readonly timeoutMs?: number
  /** Written to the process' stdin, which is then closed (e.g. with `mosquitto_pub -s`). */
  readonly stdin?: Uint8Array
}

const runClient = (command: string, args: ReadonlyArray<string>, options: ClientOptions = {}) =>
  Effect.callback<ClientResult, MosquittoUnavailable>((resume) => {
    const child = ChildProcess.spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] })
    child.stdin.on("error", () => {}) // EPIPE when the process exits early: its exit code tells
    child.stdin.end(options.stdin)
    const stdout: Array<Buffer> = []
    const stderr: Array<Buffer> = []
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk))
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk))
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 10_000)
    child.once("error", (error: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      resume(Effect.fail(
        new MosquittoUnavailable({
          message: error.code === "ENOENT"
            ? `${command} not found in PATH: install mosquitto-clients`
            : `${command} failed to start: ${error.message}`
        })
      ))
    })
    child.once("close", (code, signal) => {
      clearTimeout(timer)
      resume(Effect.succeed({
        stdout: Buffer.concat(stdout),
        stderr: Buffer.concat(stderr).toString("utf8"),
        code,
        signal
      }))
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      child.kill("SIGKILL")
    })
  })

/** Runs `mosquitto_pub ...args` to completion (bounded by `timeoutMs`, default 10 s). */
export const mosquittoPub = (
  args: ReadonlyArray<string>,
  options?: ClientOptions
): Effect.Effect<ClientResult, MosquittoUnavailable> => runClient("mosquitto_pub", args, options)

/**
 * Runs `mosquitto_sub ...args` until it exits; pass `-C count` and `-W seconds`
 * so it ends by itself (hard limit `timeoutMs`, default 10 s).
 */
export const mosquittoSub = (
  args: ReadonlyArray<string>,
  options?: ClientOptions
): Effect.Effect<ClientResult, MosquittoUnavailable> => runClient("mosquitto_sub", args, options)
