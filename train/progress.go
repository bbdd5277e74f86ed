package train

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"time"
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

func openMetrics(path string, appendTo bool) (*metricsWriter, error) {
	flag := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if appendTo {
		flag = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	f, err := os.OpenFile(path, flag, 0o644)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &metricsWriter{f: f, w: bufio.NewWriter(f)}, nil
}

func jsonFloat(x float64) any {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return x
}

func (m *metricsWriter) write(p Point) error {
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

func (m *metricsWriter) Close() error {
	if err := m.w.Flush(); err != nil {
		m.f.Close()
		return err
	}
	return m.f.Close()
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
