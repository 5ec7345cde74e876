// Command invoker is seuss's one binary: an Apache OpenWhisk invoker that runs every
// activation in a unikernel context (UC) resumed from a snapshot.
//
// Subcommands register themselves from their own files (run.go, serve.go, ...), so
// that main stays a thin dispatcher: flags, wiring and signal handling only.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand of bin/invoker.
type command struct {
	summary string
	// main parses args (without the subcommand name) and runs. It returns the process
	// exit status; errors are printed by main.
	main func(ctx context.Context, args []string) (int, error)
}

var commands = map[string]command{}

// register adds a subcommand; called from init functions of this package's files.
func register(name, summary string, main func(ctx context.Context, args []string) (int, error)) {
	if _, dup := commands[name]; dup {
		panic("invoker: subcommand registered twice: " + name)
	}
	commands[name] = command{summary: summary, main: main}
}

// errUsage marks an error in the command line; main prints the usage after it.
var errUsage = errors.New("usage")

func usage() {
	fmt.Fprintln(os.Stderr, "usage: invoker COMMAND [FLAGS] [ARGS]")
	fmt.Fprintln(os.Stderr, "commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-11s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(os.Stderr, "run 'invoker COMMAND -h' for a command's flags")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "invoker: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code, err := cmd.main(ctx, os.Args[2:])
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "invoker %s: %v\n", os.Args[1], err)
		if errors.Is(err, errUsage) && code == 0 {
			code = 2
		}
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
