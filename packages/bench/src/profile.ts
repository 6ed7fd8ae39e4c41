/**
 * Reads V8 CPU profiles (`node --cpu-prof`, `.cpuprofile` files) and lists
 * the functions with the most self time, summed over every profile in a
 * directory. `npm run bench -- --profile --only <id>` prints this for
 * effect-mqtt's workers; on its own: `node packages/bench/dist/profile.js DIR [TOP]`.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
}

interface CpuProfile {
  readonly nodes: ReadonlyArray<{ readonly id: number; readonly callFrame: CallFrame }>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

export interface HotFunction {
  readonly name: string
  /** file:line, shortened to the package-relative path. */
  readonly where: string
  readonly selfMs: number
  readonly percent: number
}

const shorten = (url: string): string => {
  const path = url.replace(/^file:\/\//, "")
  const pkg = /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)\/(.*)$/.exec(path)
  if (pkg !== null) return `${pkg[1]}/${pkg[2]}`
  const ours = /packages\/(.*)$/.exec(path)
  return ours !== null ? ours[1] : path === "" ? "(native)" : path
}

/** Self time per function over every `.cpuprofile` in `dir` whose name matches `filter`, most first. */
export const hotFunctions = (dir: string, top = 15, filter: (file: string) => boolean = () => true): Array<HotFunction> => {
  const totals = new Map<string, { name: string; where: string; micros: number }>()
  let all = 0
  for (const file of Fs.readdirSync(dir).filter((f) => f.endsWith(".cpuprofile") && filter(f))) {
    const profile = JSON.parse(Fs.readFileSync(Path.join(dir, file), "utf8")) as CpuProfile
    const frames = new Map(profile.nodes.map((node) => [node.id, node.callFrame]))
    for (let i = 0; i < profile.samples.length; i++) {
      const frame = frames.get(profile.samples[i])
      if (frame === undefined) continue
      const micros = profile.timeDeltas[i] ?? 0
      all += micros
      const name = frame.functionName || "(anonymous)"
      const where = `${shorten(frame.url)}:${frame.lineNumber + 1}`
      const key = `${name} ${where}`
      const entry = totals.get(key) ?? { name, where, micros: 0 }
      entry.micros += micros
      totals.set(key, entry)
    }
  }
  return [...totals.values()]
    .sort((a, b) => b.micros - a.micros)
    .slice(0, top)
    .map((e) => ({ name: e.name, where: e.where, selfMs: e.micros / 1000, percent: (100 * e.micros) / all }))
}

export const renderHot = (rows: ReadonlyArray<HotFunction>): string =>
  [
    "| self ms | % | function | where |",
    "|---:|---:|---|---|",
    ...rows.map((r) => `| ${r.selfMs.toFixed(0)} | ${r.percent.toFixed(1)} | ${r.name} | ${r.where} |`)
  ].join("\n")

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === Path.resolve(process.argv[1])) {
  const [dir, top] = process.argv.slice(2)
  if (dir === undefined) {
    console.error("usage: profile.js DIR [TOP]")
    process.exit(2)
  }
  console.log(renderHot(hotFunctions(dir, top === undefined ? 25 : Number(top))))
}
