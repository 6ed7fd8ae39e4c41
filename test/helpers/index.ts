/**
 * Broker helpers for integration tests.
 *
 * ```ts
 * import { Aedes, Mosquitto } from "../helpers/index.js"
 * const broker = yield* Mosquitto.start().pipe(Mosquitto.requireBroker)
 * ```
 */
export * as Aedes from "./Aedes.js"
export * as Mosquitto from "./Mosquitto.js"
export { MosquittoUnavailable, mosquittoPub, mosquittoSub, requireBroker } from "./Mosquitto.js"
export { canConnect, freePort, sleepReal, waitForPort } from "./net.js"
