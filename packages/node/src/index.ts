/**
 * @since 0.1.0
 */
export * as NodeMqttClient from "./NodeMqttClient.ts"
