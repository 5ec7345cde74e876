// Command mkroot builds the read-only runtime roots (make rootfs): one directory per
// kind under -out, each with a manifest.json whose digest keys the kind's snapshots.
// A root is rebuilt only when its digest changes.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/seuss-go/seuss/runtimes"
)

func main() {
	out := flag.String("out", ".seuss/roots", "directory holding one root per kind")
	kind := flag.String("kind", "", "build only this kind (default: all)")
	flag.Parse()
	kinds := runtimes.Kinds()
	if *kind != "" {
		k, err := runtimes.Resolve(*kind)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mkroot:", err)
			os.Exit(2)
		}
		kinds = []runtimes.Kind{k}
	}
	for _, k := range kinds {
		res, err := runtimes.BuildRoot(k, *out)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mkroot:", err)
			os.Exit(1)
		}
		fmt.Println(res)
		for _, s := range res.Root.Manifest.Skipped {
			fmt.Printf("  skipped %s: a library it needs is missing\n", s)
		}
	}
}
