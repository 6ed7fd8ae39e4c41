/**
 * Every child process the benchmark starts goes through {@link spawnTracked},
 * so all of them (workers, mosquitto, the C clients) are killed when a run
 * ends, when the benchmark exits, or when it is interrupted (Ctrl-C, SIGTERM).
 */
import * as ChildProcess from "node:child_process"

const live = new Set<ChildProcess.ChildProcess>()

export const isRunning = (child: ChildProcess.ChildProcess): boolean =>
  child.pid !== undefined && child.exitCode === null && child.signalCode === null

export const killAll = (): void => {
  for (const child of live) if (isRunning(child)) child.kill("SIGKILL")
  live.clear()
}

process.once("exit", killAll)
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    killAll()
    process.exit(130)
  })
}

export const spawnTracked = (
  command: string,
  args: ReadonlyArray<string>,
  options: ChildProcess.SpawnOptions = {}
): ChildProcess.ChildProcess => {
  const child = ChildProcess.spawn(command, args, options)
  live.add(child)
  child.once("exit", () => live.delete(child))
  // A spawn failure (ENOENT…) is reported by the caller through "error"; never crash on it here.
  child.on("error", () => {})
  return child
}

/** Resolves once `child` has exited; SIGKILLs it first when it still runs after `graceMs`. */
export const stop = (child: ChildProcess.ChildProcess, graceMs = 0): Promise<void> =>
  new Promise((resolve) => {
    if (!isRunning(child)) return resolve()
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs)
    child.once("exit", () => {
      clearTimeout(timer)
      resolve()
    })
    if (graceMs === 0) child.kill("SIGKILL")
    else child.kill("SIGTERM")
  })

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Waits for `promise`, at most `ms`; true when it settled in time. The timer never outlives the wait. */
export const within = async (promise: Promise<unknown>, ms: number): Promise<boolean> => {
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)))
  try {
    return await Promise.race([promise.then(() => true, () => true), timedOut])
  } finally {
    clearTimeout(timer)
  }
}
