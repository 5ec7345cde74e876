// Package kafka connects the invoker to OpenWhisk's Kafka topics: it consumes
// ActivationMessages from invoker{N} (group invoker{N}), produces acks on completed{C},
// health pings on health and optional user events on events (openwhisk-protocol.md §1,
// §3), and runs the embedded Kafka-protocol broker used by standalone mode and tests.
//
// It sits above package activation: it knows the topics, the consumer group and the
// offsets; the lifecycle of one activation (fetch, run, record, which acks) is
// activation's. It must not know how actions are executed or stored.
package kafka

// Topic names and sizes, from openwhisk-protocol.md §1.
const (
	// MaxMessageBytes is OpenWhisk's MAX_ACTIVATION_LIMIT: payload.max (1 MiB) plus the
	// serdes overhead (6068). It is the max.message.bytes of invoker{N} and completed{C}
	// and the producers' max request size (ActivationEntityLimit.scala).
	MaxMessageBytes = 1048576 + 6068

	HealthTopic = "health"
	EventsTopic = "events"
)

// InvokerTopic is the topic (and consumer group) of invoker n: "invoker<n>".
func InvokerTopic(n int) string { return "invoker" + itoa(n) }

// CompletedTopic is the ack topic of controller c ("completed" + rootControllerIndex.asString).
func CompletedTopic(controller string) string { return "completed" + controller }

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	if neg {
		n = -n
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
