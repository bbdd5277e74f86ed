package data

import (
	"errors"
	"fmt"
	"sync"
)

// Batch is B windows of T tokens, row-major: X are the inputs and Y the
// targets (X shifted by one).
type Batch struct {
	X, Y  []int
	B, T  int
	state []byte // sampler state after this batch
	err   error
	fault error // the data file changed under the sampler: X and Y are not valid
}

// Err reports that the batch could not be read because a data file was
// truncated or changed while in use (wrapping ErrTruncated, naming the
// file); X and Y are then not valid and training must stop.
func (b *Batch) Err() error { return b.fault }

// Loader prefetches batches from a Sampler in a background goroutine, so the
// trainer never waits on the disk. Its State is that of the last batch handed
// out by Next, not of the batches prefetched, so a resume is exact. A Loader
// is not safe for concurrent use.
type Loader struct {
	s     Sampler
	b, t  int
	ready chan *Batch
	free  chan *Batch
	stop  chan struct{}
	wg    sync.WaitGroup
	cur   *Batch
	state []byte
}

// NewLoader starts prefetching up to depth batches of B windows of T tokens.
func NewLoader(s Sampler, B, T, depth int) (*Loader, error) {
	if B < 1 || T != s.CtxLen() || depth < 1 {
		return nil, fmt.Errorf("data: loader: B=%d T=%d depth=%d, want B >= 1, depth >= 1, T = ctx_len %d", B, T, depth, s.CtxLen())
	}
	st, err := s.State()
	if err != nil {
		return nil, err
	}
	l := &Loader{s: s, b: B, t: T, ready: make(chan *Batch, depth), free: make(chan *Batch, depth+2), state: st}
	for range depth + 2 { // depth queued, one being filled, one held by the caller
		l.free <- &Batch{X: make([]int, B*T), Y: make([]int, B*T), B: B, T: T}
	}
	l.start()
	return l, nil
}

func (l *Loader) start() {
	l.stop = make(chan struct{})
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			var b *Batch
			select {
			case b = <-l.free:
			case <-l.stop:
				return
			}
			b.fault = fill(l.s, b, l.b, l.t)
			b.state, b.err = l.s.State()
			select {
			case l.ready <- b:
			case <-l.stop:
				l.free <- b
				return
			}
		}
	}()
}

// fill draws the next batch from s, turning a fault on a truncated file
// into an error. It checks the files' sizes first: a file that shrank by
// less than a page reads as zeros rather than faulting.
func fill(s Sampler, b *Batch, B, T int) (err error) {
	if ts, ok := s.(interface{ tokens() *Tokens }); ok && ts.tokens() != nil {
		if err := ts.tokens().Check(); err != nil {
			return err
		}
	}
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(error)
			if !ok || !errors.Is(e, ErrTruncated) {
				panic(r)
			}
			err = e
		}
	}()
	s.NextBatch(b.X, b.Y, B, T)
	return nil
}

// Next returns the next batch. It stays valid until the next call to Next.
func (l *Loader) Next() *Batch {
	if l.cur != nil {
		l.free <- l.cur
	}
	l.cur = <-l.ready
	l.state = l.cur.state
	return l.cur
}

// State returns the sampler state after the last batch Next returned.
func (l *Loader) State() ([]byte, error) {
	if l.cur != nil && l.cur.err != nil {
		return nil, l.cur.err
	}
	return l.state, nil
}

// SetState drops the prefetched batches and continues from state. The batch
// Next returned last is no longer valid. If state is rejected, the loader
// continues from where it was.
func (l *Loader) SetState(state []byte) error {
	l.halt()
	defer l.start()
	if err := l.s.SetState(state); err != nil {
		// The worker ran ahead: rewind to the last batch handed out.
		if rerr := l.s.SetState(l.state); rerr != nil {
			panic(fmt.Sprintf("data: loader cannot restore its own state: %v", rerr))
		}
		return err
	}
	l.state = append([]byte(nil), state...)
	return nil
}

// halt stops the worker and returns every batch to the free list.
func (l *Loader) halt() {
	close(l.stop)
	l.wg.Wait()
	for len(l.ready) > 0 {
		l.free <- <-l.ready
	}
	if l.cur != nil {
		l.free <- l.cur
		l.cur = nil
	}
}

// Close stops the background goroutine. Do not call Next after Close.
func (l *Loader) Close() error {
	l.halt()
	return nil
}
