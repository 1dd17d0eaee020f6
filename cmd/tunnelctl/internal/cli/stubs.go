package cli

import (
	"context"
	"errors"
)

// errNotYet marks commands whose dependencies have not landed yet (TODO: remove).
var errNotYet = errors.New("not available in this build yet")

func (a *App) cmdProxy(ctx context.Context, g *globals, args []string) error { return errNotYet }
func (a *App) cmdSSH(ctx context.Context, g *globals, args []string) error   { return errNotYet }
func (a *App) cmdDemo(ctx context.Context, g *globals, args []string) error  { return errNotYet }
