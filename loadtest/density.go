package main

import (
	"context"
	"io"
)

func densityMain(ctx context.Context, args []string, stdout, stderr io.Writer) error { return nil }
