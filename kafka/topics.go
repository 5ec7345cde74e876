package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// TopicConfigs returns the topic configs OpenWhisk's ensureTopic sets for topic
// (KafkaMessagingProvider.scala; application.conf kafka.topics): max.message.bytes for
// invoker{N} and completed{C}, retention for all.
func TopicConfigs(topic string) map[string]string {
	c := map[string]string{
		"segment.bytes":   "536870912",
		"retention.bytes": "1073741824",
		"retention.ms":    "3600000",
	}
	switch {
	case strings.HasPrefix(topic, "invoker"):
		c["retention.ms"] = "172800000"
		c["max.message.bytes"] = itoa(MaxMessageBytes)
	case strings.HasPrefix(topic, "completed"):
		c["max.message.bytes"] = itoa(MaxMessageBytes)
	case topic == "cacheInvalidation":
		c["retention.ms"] = "300000"
	}
	return c
}

// EnsureTopic creates topic with one partition, replication factor 1 and
// TopicConfigs(topic) unless it exists, as OpenWhisk's ensureTopic does. brokers is a
// list of host:port; the first that answers is used.
func EnsureTopic(ctx context.Context, brokers []string, topic string) error {
	return EnsureTopics(ctx, brokers, topic)
}

// EnsureTopics is EnsureTopic for several topics.
func EnsureTopics(ctx context.Context, brokers []string, topics ...string) error {
	if len(topics) == 0 {
		return nil
	}
	if len(brokers) == 0 {
		return errors.New("kafka: ensure topics: no brokers")
	}
	req := &kafkago.CreateTopicsRequest{}
	for _, t := range topics {
		tc := kafkago.TopicConfig{Topic: t, NumPartitions: 1, ReplicationFactor: 1}
		for k, v := range TopicConfigs(t) {
			tc.ConfigEntries = append(tc.ConfigEntries, kafkago.ConfigEntry{ConfigName: k, ConfigValue: v})
		}
		req.Topics = append(req.Topics, tc)
	}
	var lastErr error
	for _, b := range brokers {
		// A transport of its own: kafka-go's default one pools connections by address,
		// and a pooled connection to a broker that restarted on the same address fails.
		tr := &kafkago.Transport{DialTimeout: 5 * time.Second}
		cl := &kafkago.Client{Addr: kafkago.TCP(b), Timeout: 10 * time.Second, Transport: tr}
		req.Addr = cl.Addr
		res, err := cl.CreateTopics(ctx, req)
		tr.CloseIdleConnections()
		if err != nil {
			lastErr = err
			continue
		}
		for t, e := range res.Errors {
			if e != nil && !errors.Is(e, kafkago.TopicAlreadyExists) {
				return fmt.Errorf("kafka: create topic %s: %w", t, e)
			}
		}
		return nil
	}
	return fmt.Errorf("kafka: ensure topics %v: %w", topics, lastErr)
}

// SplitBrokers splits a KAFKA_HOSTS-style list "h1:p1,h2:p2".
func SplitBrokers(s string) []string {
	var out []string
	for _, b := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		if _, _, err := net.SplitHostPort(b); err != nil {
			b = net.JoinHostPort(b, "9092")
		}
		out = append(out, b)
	}
	return out
}
