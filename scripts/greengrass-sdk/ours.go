package main

import "context"

func runOurClient(ctx context.Context, r *report, w *world) error { return nil }
