package optim

import "sync"

// task is one contiguous range of one tensor to update.
type task[F Float] struct {
	p, g, m, v []F
	k          coeffs
}

// pool is a set of long-lived workers fed by a channel, so that Step
// starts no goroutine and allocates nothing. It holds no reference to
// the AdamW that owns it; a cleanup on the AdamW closes it.
type pool[F Float] struct {
	tasks   chan task[F]
	wg      sync.WaitGroup
	workers int
}

func newPool[F Float]() *pool[F] {
	return &pool[F]{tasks: make(chan task[F], 256)}
}

// grow starts workers until there are n.
func (pl *pool[F]) grow(n int) {
	for ; pl.workers < n; pl.workers++ {
		go pl.work()
	}
}

func (pl *pool[F]) work() {
	for t := range pl.tasks {
		update(t.p, t.g, t.m, t.v, &t.k)
		pl.wg.Done()
	}
}

func (pl *pool[F]) submit(t task[F]) {
	pl.wg.Add(1)
	pl.tasks <- t
}

// wait lends the calling goroutine to the queue, then waits for the
// tasks the workers took.
func (pl *pool[F]) wait() {
	for {
		select {
		case t := <-pl.tasks:
			update(t.p, t.g, t.m, t.v, &t.k)
			pl.wg.Done()
		default:
			pl.wg.Wait()
			return
		}
	}
}

func (pl *pool[F]) close() { close(pl.tasks) }
