package main

import (
	"context"
	"io"
)

func deployMain(ctx context.Context, args []string, stdout, stderr io.Writer) error { return nil }
