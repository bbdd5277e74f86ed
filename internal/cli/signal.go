// Package cli holds what the commands share: how they stop on a signal and how they parse flags.
package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// StopSignals stop a command gracefully: Ctrl-C, the SIGTERM schedulers (Slurm, Kubernetes)
// send, the SIGHUP of a closed terminal, and SIGUSR1: Open MPI's mpirun forwards it to every
// rank (a SIGTERM sent to mpirun itself reaches them only as SIGTERM then SIGKILL one second
// apart, by default), and Slurm
// sends it ahead of a time limit with --signal=USR1@SECONDS.
var StopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1}

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
