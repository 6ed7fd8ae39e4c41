import { registerHooks } from "node:module"
import fs from "node:fs"
const seen = []
registerHooks({ load(url, ctx, next) { const r = next(url, ctx); if (url.includes("/effect/dist/")) seen.push([url.replace(/.*\/effect\/dist\//,""), fs.statSync(new URL(url)).size]); return r } })
process.on("exit", () => { seen.sort((a,b)=>b[1]-a[1]); for (const [u,s] of seen.slice(0,45)) console.log((s/1024).toFixed(0).padStart(5), u) })
