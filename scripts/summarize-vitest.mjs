#!/usr/bin/env node
// Prints "N passed, N failed" (always the last line) from vitest's JSON report
// and exits non-zero when anything failed.
// Usage: node scripts/summarize-vitest.mjs <report.json> <exit code of the test command>
// A missing report means the run never got to report (e.g. `tsc -b` failed): "0 passed, 1 failed".
import { existsSync, readFileSync } from "node:fs"

const [file = ".vitest-report.json", codeArg = "0"] = process.argv.slice(2)
const code = Number(codeArg)
let passed = 0
let failed = 0

const load = () => {
  try {
    return JSON.parse(readFileSync(file, "utf8"))
  } catch (error) {
    console.log(`[summary] cannot read ${file}: ${error.message}`)
    return undefined
  }
}

const report = existsSync(file) ? load() : (console.log(`[summary] no ${file}: type check (tsc -b) or vitest startup failed (exit ${code})`), undefined)
if (report === undefined) {
  failed = 1
} else {
  passed = report.numPassedTests ?? 0
  failed = report.numFailedTests ?? 0
  // Files that failed without a failing test: import/collect errors, failing hooks, crashed workers.
  for (const result of report.testResults ?? []) {
    const hasFailedTest = (result.assertionResults ?? []).some((test) => test.status === "failed")
    if (result.status === "failed" && !hasFailedTest) {
      console.log(`[summary] test file failed: ${result.name}: ${result.message || "(no message)"}`)
      failed++
    }
  }
  const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0)
  if (skipped > 0) console.log(`[summary] warning: ${skipped} test(s) skipped or todo`)
  if (code !== 0 && failed === 0) {
    console.log(`[summary] the test command exited with ${code} although no test failed (unhandled errors? no tests?)`)
    failed = 1
  }
}

console.log(`${passed} passed, ${failed} failed`)
process.exit(failed > 0 || code !== 0 ? 1 : 0)
