import { registerHooks } from "node:module"
import fs from "node:fs"
const seen = new Map()
registerHooks({ load(url, ctx, next) { const r = next(url, ctx); if (url.startsWith("file:")) { try { seen.set(url, fs.statSync(new URL(url)).size) } catch {} } return r } })
process.on("exit", () => { const groups = {}; for (const [u, s] of seen) { const m = u.replace(/.*node_modules\/\.pnpm\/[^/]+\//,"").match(/node_modules\/((?:@[^/]+\/)?[^/]+)\/(dist\/)?([^/]+)/); const k = m ? m[1] : "own"; (groups[k] ??= [0,0]); groups[k][0]++; groups[k][1]+=s } ; for (const [k,[n,s]] of Object.entries(groups).sort((a,b)=>b[1][1]-a[1][1])) console.log(k, n, (s/1024).toFixed(0)+" KiB") })
