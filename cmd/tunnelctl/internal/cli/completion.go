package cli

import "context"

func (a *App) cmdCompletion(_ context.Context, g *globals, args []string) error { return nil }
