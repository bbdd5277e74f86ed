// Package cli holds what the commands share: how they stop on a signal.
package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// StopSignals stop a command gracefully: Ctrl-C, the SIGTERM schedulers (Slurm, Kubernetes)
// send, and the SIGHUP of a closed terminal.
var StopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}

// NotifyStop returns a context cancelled by the first of StopSignals. After it, the signals'
// default action is restored, so a second one kills the process at once (the shell reports
// 128+signal). A signal the process started with ignored (nohup's SIGHUP, SIGINT of a
// background job) stays ignored.
func NotifyStop(parent context.Context) (context.Context, context.CancelFunc) {
	var sigs []os.Signal
	for _, s := range StopSignals {
		if !signal.Ignored(s) {
			sigs = append(sigs, s)
		}
	}
	ctx, stop := signal.NotifyContext(parent, sigs...)
	go func() {
		<-ctx.Done()
		stop() // restores the default action of sigs
	}()
	return ctx, stop
}
