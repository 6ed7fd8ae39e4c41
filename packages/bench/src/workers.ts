/**
 * Starting worker processes (`worker.ts`) from the orchestrator and reading
 * what they report.
 */
import type * as ChildProcess from "node:child_process"
import { fileURLToPath } from "node:url"
import { isRunning, spawnTracked, stop } from "./children.ts"
import { LINE_PREFIX, type WorkerMessage, type WorkerSpec } from "./protocol.ts"

/** The worker next to this module: `worker.js` in dist/, `worker.ts` when run from the sources. */
const WORKER = fileURLToPath(new URL(import.meta.url.endsWith(".ts") ? "./worker.ts" : "./worker.js", import.meta.url))

export interface WorkerOptions {
  /** SIGKILL the worker after this long. */
  readonly timeoutMs: number
  /** Write a V8 CPU profile (`node --cpu-prof`) into this directory. */
  readonly profileDir?: string | undefined
}

export interface Worker<R> {
  /** Resolves when the worker printed `ready` (with the port a peer listens on). */
  readonly ready: Promise<number | undefined>
  readonly result: Promise<R>
  /** Waits up to `graceMs` for the worker to exit by itself (it does after its result), then SIGKILLs it. */
  readonly finish: (graceMs?: number) => Promise<void>
}

let started = 0

export const startWorker = <R>(spec: WorkerSpec, options: WorkerOptions): Worker<R> => {
  // Named by role, so publishers' and subscribers' profiles can be summed apart.
  const nodeArgs = options.profileDir !== undefined
    ? ["--cpu-prof", `--cpu-prof-dir=${options.profileDir}`, `--cpu-prof-name=${spec.role}-${process.pid}-${++started}.cpuprofile`]
    : []
  // BENCH_NODE_ARGS: extra node flags for the workers (e.g. --trace-gc), for investigations.
  const extraArgs = process.env.BENCH_NODE_ARGS?.split(" ").filter((arg) => arg !== "") ?? []
  const child: ChildProcess.ChildProcess = spawnTracked(process.execPath, [...nodeArgs, ...extraArgs, WORKER, JSON.stringify(spec)], {
    stdio: ["ignore", "pipe", "pipe"]
  })
  const label = "client" in spec ? `${spec.client} ${spec.role}` : spec.role
  let stderr = ""
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString("utf8")).slice(-4_000)
    // BENCH_TRACE_MEMORY (see worker.ts): the traces are the point, show them as they come.
    if (process.env.BENCH_TRACE_MEMORY || process.env.BENCH_ALLOC_PROFILE) process.stderr.write(chunk.toString("utf8").replace(/^(?=.)/gm, `[${label}] `))
  })

  let onReady: (port: number | undefined) => void = () => {}
  let onResult: (result: R) => void = () => {}
  let onFailure: (error: Error) => void = () => {}
  const ready = new Promise<number | undefined>((resolve, reject) => {
    onReady = resolve
    onFailure = reject
  })
  const result = new Promise<R>((resolve, reject) => {
    onResult = resolve
    const previous = onFailure
    onFailure = (error) => {
      previous(error)
      reject(error)
    }
  })
  // Nobody may await `ready` (or `result`) when the other fails first: never an unhandled rejection.
  ready.catch(() => {})
  result.catch(() => {})

  let buffered = ""
  child.stdout?.on("data", (chunk: Buffer) => {
    buffered += chunk.toString("utf8")
    let newline: number
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline)
      buffered = buffered.slice(newline + 1)
      if (!line.startsWith(LINE_PREFIX)) {
        // Anything else a worker prints (node --trace-gc, say) is shown when tracing.
        if (process.env.BENCH_TRACE_MEMORY) process.stderr.write(`[${label}] ${line}\n`)
        continue
      }
      const message = JSON.parse(line.slice(LINE_PREFIX.length)) as WorkerMessage
      if (message.type === "ready") onReady(message.port)
      else if (message.type === "result") onResult(message.result as R)
      else onFailure(new Error(`${label} failed:\n${message.message}`))
    }
  })

  const timer = setTimeout(() => {
    onFailure(new Error(`${label} did not finish within ${options.timeoutMs} ms; killed.\n${stderr}`))
    child.kill("SIGKILL")
  }, options.timeoutMs)
  child.once("error", (error) => onFailure(new Error(`${label} could not start: ${error.message}`)))
  child.once("exit", (code, signal) => {
    clearTimeout(timer)
    // Settling twice is harmless: only the first settlement of a promise counts.
    onFailure(new Error(`${label} exited (code ${code}, signal ${signal}) without a result.\n${stderr}`))
  })

  return {
    ready,
    result,
    finish: (graceMs = 0) =>
      new Promise<void>((resolve) => {
        if (!isRunning(child)) return resolve()
        const timer = setTimeout(() => void stop(child).then(resolve), graceMs)
        child.once("exit", () => {
          clearTimeout(timer)
          resolve()
        })
      })
  }
}
