package main

import (
	"fmt"
	"io"
	"time"
)

// progressBar shows (done, total) of some unit with a rate: one line rewritten in place on a
// terminal, a plain line per tenth of the work otherwise.
type progressBar struct {
	w        io.Writer
	what     string // "tokens", "examples"
	terminal bool
	start    time.Time
	last     time.Time
	tenth    int64
	shown    bool
}

func newProgressBar(w io.Writer, terminal bool, what string) *progressBar {
	return &progressBar{w: w, what: what, terminal: terminal, start: time.Now()}
}

// update is the callback eval calls.
func (p *progressBar) update(done, total int64) {
	now := time.Now()
	if p.terminal {
		if done < total && now.Sub(p.last) < 100*time.Millisecond {
			return
		}
	} else {
		t := done * 10 / max(total, 1)
		if t == p.tenth && done < total {
			return
		}
		p.tenth = t
	}
	p.last, p.shown = now, true
	sec := now.Sub(p.start).Seconds()
	rate := float64(done) / max(sec, 1e-9)
	line := fmt.Sprintf("%5.1f%% %s %d/%d %s  %.0f %s/s  %s", 100*float64(done)/float64(max(total, 1)),
		bar(done, total, 24), done, total, p.what, rate, p.what, eta(done, total, rate))
	if p.terminal {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
}

// finish ends the live line.
func (p *progressBar) finish() {
	if p.terminal && p.shown {
		fmt.Fprintln(p.w)
	}
}

func bar(done, total int64, width int) string {
	n := int(int64(width) * done / max(total, 1))
	b := make([]byte, 0, width+2)
	b = append(b, '[')
	for i := range width {
		if i < n {
			b = append(b, '#')
		} else {
			b = append(b, '.')
		}
	}
	return string(append(b, ']'))
}

func eta(done, total int64, rate float64) string {
	if done >= total || rate <= 0 {
		return ""
	}
	return "eta " + time.Duration(float64(total-done)/rate*float64(time.Second)).Round(time.Second).String()
}
