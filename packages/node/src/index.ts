/**
 * @since 0.1.0
 */
export * as FaultProxy from "./FaultProxy.ts"
export * as NodeMqttClient from "./NodeMqttClient.ts"
