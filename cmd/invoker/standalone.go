package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/seuss-go/seuss/controller"
	"github.com/seuss-go/seuss/standalone"
)

func init() {
	register("standalone", "embedded Kafka, bbolt store, REST API and invoker in one process (what `make run` starts)", standaloneMain)
}

func standaloneMain(ctx context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("standalone", flag.ContinueOnError)
	dataDir := fs.String("data-dir", ".seuss", "directory for the store and snapshots (created if missing)")
	apiListen := fs.String("api-listen", standalone.DefaultAPIListen, "address of the OpenWhisk REST API")
	kafkaListen := fs.String("kafka-listen", standalone.DefaultKafkaListen, "address of the embedded Kafka broker")
	executor := fs.String("executor", "", "how actions run: uc (unikernel contexts from snapshots; the default where /dev/kvm and the runtime roots exist) or process (host processes)")
	userMemory := fs.Int("user-memory", 2048, "MB of memory shared by running activations")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: invoker standalone [--data-dir DIR] [--api-listen ADDR] [--kafka-listen ADDR] [--executor uc|process]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0, nil
		}
		return 2, errUsage
	}
	if fs.NArg() > 0 {
		return 2, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	st, err := standalone.Start(ctx, standalone.Config{
		DataDir:      *dataDir,
		APIListen:    *apiListen,
		KafkaListen:  *kafkaListen,
		ExecutorKind: *executor,
		UserMemoryMB: *userMemory,
		Logger:       log,
		Progress:     os.Stderr,
	})
	if err != nil {
		return 1, err
	}
	printBanner(os.Stdout, st, st.ExecutorKind)
	if err := st.Wait(); err != nil {
		return 1, err
	}
	fmt.Fprintln(os.Stdout, "seuss standalone stopped")
	return 0, nil
}

// printBanner tells how to point clients at the stack.
func printBanner(w io.Writer, st *standalone.Stack, executor string) {
	fmt.Fprintf(w, `seuss standalone is up (executor: %s)
  REST API   %s   namespace guest
  Kafka      %s   topics invoker0, completed0, health
  data       %s

Point a client at it:
  wsk:     wsk property set --apihost %s --auth %s
  Go:      whisk.NewClient(nil, &whisk.Config{Host: %q, AuthToken: %q, Namespace: "_"})
           (github.com/apache/openwhisk-client-go/whisk)
  curl:    curl -u %s %s/api/v1/namespaces/_/actions

Ctrl-C stops it.
`, executor, st.APIHost, st.KafkaAddr, st.DataDir,
		st.APIHost, controller.GuestAuth,
		st.APIHost, controller.GuestAuth,
		controller.GuestAuth, st.APIHost)
}
