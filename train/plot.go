package train

import (
	"bytes"
	"fmt"
	"io"
	"math"

	"github.com/rwkv-go/rwkv-go/checkpoint"
)

// WriteLossPlot writes the training (and validation) loss against the step as an SVG file,
// atomically.
func WriteLossPlot(path string, pts []Point) error {
	var buf bytes.Buffer
	plotSVG(&buf, pts)
	return checkpoint.WriteFileAtomic(path, func(w io.Writer) error {
		_, err := w.Write(buf.Bytes())
		return err
	})
}

func plotSVG(w io.Writer, pts []Point) {
	const W, H, left, right, top, bottom = 720.0, 420.0, 70.0, 20.0, 30.0, 50.0
	lo, hi := math.Inf(1), math.Inf(-1)
	maxStep := 1
	for _, p := range pts {
		for _, v := range []float64{p.Loss, p.ValLoss} {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
		maxStep = max(maxStep, p.Step)
	}
	if math.IsInf(lo, 1) {
		lo, hi = 0, 1
	}
	if hi-lo < 1e-9 {
		hi = lo + 1
	}
	x := func(step int) float64 { return left + (W-left-right)*float64(step)/float64(maxStep) }
	y := func(v float64) float64 { return top + (H-top-bottom)*(hi-v)/(hi-lo) }
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" font-family="sans-serif" font-size="12">`+"\n", W, H)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(w, `<text x="%g" y="18" font-size="14">loss (nats/token)</text>`+"\n", left)
	for i := 0; i <= 4; i++ {
		v := lo + (hi-lo)*float64(i)/4
		fmt.Fprintf(w, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#ddd"/><text x="%g" y="%.1f" text-anchor="end">%.3f</text>`+"\n",
			left, y(v), W-right, y(v), left-6, y(v)+4, v)
	}
	for i := 0; i <= 4; i++ {
		s := maxStep * i / 4
		fmt.Fprintf(w, `<text x="%.1f" y="%g" text-anchor="middle">%d</text>`+"\n", x(s), H-bottom+18, s)
	}
	fmt.Fprintf(w, `<text x="%g" y="%g" text-anchor="middle">step</text>`+"\n", (left+W-right)/2, H-10)
	line := func(get func(Point) float64, color string) {
		var b bytes.Buffer
		for _, p := range pts {
			if v := get(p); !math.IsNaN(v) && !math.IsInf(v, 0) {
				fmt.Fprintf(&b, "%.1f,%.1f ", x(p.Step), y(v))
			}
		}
		if b.Len() > 0 {
			fmt.Fprintf(w, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", color, b.String())
		}
	}
	line(func(p Point) float64 { return p.Loss }, "#1f77b4")
	line(func(p Point) float64 { return p.ValLoss }, "#d62728")
	fmt.Fprintf(w, `<text x="%g" y="%g" fill="#1f77b4">train</text><text x="%g" y="%g" fill="#d62728">validation</text>`+"\n",
		W-right-120, top+12, W-right-70, top+12)
	fmt.Fprintln(w, "</svg>")
}
