package kafka

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Broker is the embedded single-node Kafka-protocol broker (franz-go's kfake, in memory)
// that standalone mode and the tests use. It speaks the real wire protocol, so
// kafka-go, franz-go and kcat reach it at Addr.
//
// It keeps everything in memory: a closed broker's topics, records and committed group
// offsets are gone (kfake's persistence mode is not used: it misbehaves with kafka-go).
type Broker struct {
	c    *kfake.Cluster
	addr string
}

// StartBroker starts a broker listening on addr ("127.0.0.1:0" picks a port;
// "0.0.0.0:9092" listens on all interfaces and advertises 127.0.0.1:9092) and creates
// topics (one partition each, with TopicConfigs). It stops when ctx is done or Close is
// called.
func StartBroker(ctx context.Context, addr string, topics ...string) (*Broker, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("kafka: broker address %q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("kafka: broker address %q: port: %w", addr, err)
	}
	advertise := host
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		advertise = "127.0.0.1"
	}
	listen := func(network, _ string) (net.Listener, error) {
		ln, err := net.Listen(network, net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			return nil, err
		}
		// kfake advertises its listener's address in metadata; clients must be told a
		// host they can dial, never 0.0.0.0.
		return advertisedListener{ln, advertise}, nil
	}
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.Ports(p),
		kfake.ListenFn(listen),
		kfake.DefaultNumPartitions(1),
		kfake.ClusterID("seuss"),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(MaxMessageBytes)}),
	)
	if err != nil {
		return nil, fmt.Errorf("kafka: start broker on %s: %w", addr, err)
	}
	b := &Broker{c: c, addr: c.ListenAddrs()[0]}
	if err := EnsureTopics(ctx, []string{b.addr}, topics...); err != nil {
		c.Close()
		return nil, err
	}
	go func() {
		<-ctx.Done()
		c.Close()
	}()
	return b, nil
}

// Addr is the host:port clients dial.
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker; its data is lost.
func (b *Broker) Close() { b.c.Close() }

type advertisedListener struct {
	net.Listener
	host string
}

func (l advertisedListener) Addr() net.Addr {
	a := l.Listener.Addr().(*net.TCPAddr)
	return advertisedAddr(net.JoinHostPort(l.host, strconv.Itoa(a.Port)))
}

type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }
