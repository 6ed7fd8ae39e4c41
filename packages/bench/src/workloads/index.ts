/** Every workload of issue 6, in the order they run and are reported. */
import { burstVariants } from "./burst.ts"
import { clientBoundVariants } from "./clientBound.ts"
import { fanInVariants } from "./fanin.ts"
import { latencyVariants } from "./latency.ts"
import { memoryVariants } from "./memory.ts"
import { payloadVariants } from "./payload.ts"
import type { Variant } from "./shared.ts"
import { windowVariants } from "./window.ts"

export const allVariants = (quick: boolean): Array<Variant> => [
  ...windowVariants(quick),
  ...clientBoundVariants(quick),
  ...burstVariants(quick),
  ...latencyVariants(quick),
  ...payloadVariants(quick),
  ...fanInVariants(quick),
  ...memoryVariants(quick)
]
