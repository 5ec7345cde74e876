package standalone_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/seuss-go/seuss/standalone"
)

// Start an in-process stack on free ports, as the load generator does, and stop it.
func ExampleStart() {
	dir, _ := os.MkdirTemp("", "seuss-example-")
	defer os.RemoveAll(dir)
	st, err := standalone.Start(context.Background(), standalone.Config{
		DataDir:     dir,
		APIListen:   "127.0.0.1:0", // any free port; st.APIHost says which
		KafkaListen: "127.0.0.1:0", // st.KafkaAddr: produce to invoker0, read completed0
	})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	fmt.Println("REST API at", st.APIHost, "- Kafka at", st.KafkaAddr)
}
