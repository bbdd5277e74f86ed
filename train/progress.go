package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"syscall"
	"time"

	"github.com/rwkv-go/rwkv-go/checkpoint"
)

// Point is one optimiser step as the metrics file and the loss curve record it. ValLoss is NaN
// on steps without validation.
type Point struct {
	Step         int     `json:"step"`
	Tokens       int64   `json:"tokens"`
	Loss         float64 `json:"loss"`
	ValLoss      float64 `json:"val_loss"`
	LR           float64 `json:"lr"`
	GradNorm     float64 `json:"grad_norm"`
	TokensPerSec float64 `json:"tokens_per_sec"`
	Skipped      bool    `json:"skipped,omitempty"`
}

// metricsWriter appends one JSON object per line to metrics.jsonl. NaN and Inf, which JSON
// cannot hold, are written as null.
type metricsWriter struct {
	f *os.File
	w *bufio.Writer
}

// openMetrics opens metrics.jsonl for a run that starts after step resumedStep (0: a fresh run).
// The file is first rewritten atomically with the records of steps <= resumedStep (those of
// steps re-run after a crash, and a half line a full disk left, are dropped), which also
// replaces a symbolic link by a file rather than writing through it; it is then opened without
// following links. It returns the kept records, for the loss plot.
func openMetrics(path string, resumedStep int) (*metricsWriter, []Point, error) {
	var kept []byte
	var prior []Point
	if resumedStep > 0 {
		var err error
		if kept, prior, err = readMetrics(path, resumedStep); err != nil {
			return nil, nil, fmt.Errorf("metrics: %w", err)
		}
	}
	if err := checkpoint.WriteFileAtomic(path, func(w io.Writer) error {
		_, err := w.Write(kept)
		return err
	}); err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o666)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	return &metricsWriter{f: f, w: bufio.NewWriter(f)}, prior, nil
}

// readMetrics returns the complete lines of an existing metrics file whose step is at most
// upTo, and their points. A missing file, or a symbolic link (not followed), holds none.
func readMetrics(path string, upTo int) ([]byte, []Point, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	var kept []byte
	var pts []Point
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break // a half line: dropped
		}
		line := b[:i+1]
		b = b[i+1:]
		var r struct {
			Step         *int     `json:"step"`
			Tokens       int64    `json:"tokens"`
			Loss         *float64 `json:"loss"`
			ValLoss      *float64 `json:"val_loss"`
			LR           float64  `json:"lr"`
			GradNorm     *float64 `json:"grad_norm"`
			TokensPerSec float64  `json:"tokens_per_sec"`
			Skipped      bool     `json:"skipped"`
		}
		if json.Unmarshal(line, &r) != nil || r.Step == nil || *r.Step > upTo {
			continue
		}
		nan := func(p *float64) float64 {
			if p == nil {
				return math.NaN()
			}
			return *p
		}
		kept = append(kept, line...)
		pts = append(pts, Point{Step: *r.Step, Tokens: r.Tokens, Loss: nan(r.Loss), ValLoss: nan(r.ValLoss), LR: r.LR,
			GradNorm: nan(r.GradNorm), TokensPerSec: r.TokensPerSec, Skipped: r.Skipped})
	}
	return kept, pts, nil
}

func jsonFloat(x float64) any {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return x
}

func (m *metricsWriter) write(p Point) error {
	if m.f == nil {
		return fmt.Errorf("metrics: write after close")
	}
	rec := map[string]any{"step": p.Step, "tokens": p.Tokens, "loss": jsonFloat(p.Loss), "val_loss": jsonFloat(p.ValLoss),
		"lr": p.LR, "grad_norm": jsonFloat(p.GradNorm), "tokens_per_sec": p.TokensPerSec}
	if p.Skipped {
		rec["skipped"] = true
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	m.w.Write(append(b, '\n'))
	return m.w.Flush()
}

// Close flushes and closes the file; it may be called more than once.
func (m *metricsWriter) Close() error {
	if m.f == nil {
		return nil
	}
	f := m.f
	m.f = nil
	if err := m.w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Progress shows training progress to a person: one line rewritten in place on a terminal,
// plain log lines every LogEvery steps otherwise.
type Progress struct {
	w        io.Writer
	terminal bool
	every    int
	last     time.Time
	dirty    bool
}

// NewProgress writes to w; terminal selects the live line; every is train.log_every.
func NewProgress(w io.Writer, terminal bool, every int) *Progress {
	return &Progress{w: w, terminal: terminal, every: max(every, 1)}
}

// Update shows the state after a step.
func (p *Progress) Update(pt Point, total int, lastVal float64, elapsed time.Duration, done int) {
	eta := time.Duration(0)
	if done > 0 {
		eta = time.Duration(float64(elapsed) / float64(done) * float64(total-pt.Step))
	}
	val := ""
	if !math.IsNaN(lastVal) {
		val = fmt.Sprintf(" val %.4f", lastVal)
	}
	skipped := ""
	if pt.Skipped {
		skipped = " SKIPPED (non-finite)"
	}
	line := fmt.Sprintf("step %d/%d loss %.4f%s lr %.3g |g| %.3g %.0f tok/s elapsed %s eta %s%s",
		pt.Step, total, pt.Loss, val, pt.LR, pt.GradNorm, pt.TokensPerSec,
		elapsed.Round(time.Second), eta.Round(time.Second), skipped)
	if p.terminal {
		if time.Since(p.last) < 100*time.Millisecond && pt.Step < total && !pt.Skipped {
			return
		}
		p.last = time.Now()
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.dirty = true
		return
	}
	if pt.Step%p.every == 0 || pt.Step == total || pt.Skipped || !math.IsNaN(pt.ValLoss) {
		fmt.Fprintln(p.w, line)
	}
}

// Done ends the live line.
func (p *Progress) Done() {
	if p.terminal && p.dirty {
		fmt.Fprintln(p.w)
		p.dirty = false
	}
}
