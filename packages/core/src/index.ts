/**
 * @since 0.1.0
 */
export * as MqttClient from "./MqttClient.ts"
export * as MqttError from "./MqttError.ts"
export * as MqttEvent from "./MqttEvent.ts"
export * as MqttMessage from "./MqttMessage.ts"
export * as MqttOptions from "./MqttOptions.ts"
export * as Topic from "./Topic.ts"
