package checkpoint

import (
	"math"
	"testing"
)

func TestFloat32ToF16(t *testing.T) {
	tests := []struct {
		name string
		in   float32
		want uint16
	}{
		{"zero", 0, 0x0000},
		{"negative zero", float32(math.Copysign(0, -1)), 0x8000},
		{"one", 1, 0x3c00},
		{"minus two", -2, 0xc000},
		{"max half", 65504, 0x7bff},
		{"rounds to max half", 65519, 0x7bff},
		{"overflows to inf", 65520, 0x7c00},
		{"inf", float32(math.Inf(1)), 0x7c00},
		{"smallest normal", 6.103515625e-05, 0x0400},
		{"largest subnormal", 6.097555160522461e-05, 0x03ff},
		{"smallest subnormal", 5.960464477539063e-08, 0x0001},
		{"half of smallest subnormal ties to zero", 2.9802322387695312e-08, 0x0000},
		{"just above half of smallest subnormal", 2.9802326e-08, 0x0001},
		{"tie to even down", 1 + 1.0/2048, 0x3c00},
		{"tie to even up", 1 + 3.0/2048, 0x3c02},
		{"above tie", 1 + 1.0/2048 + 1.0/8192, 0x3c01},
		{"subnormal tie to even", 1.5 * 5.960464477539063e-08, 0x0002},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := float32ToF16(tt.in); got != tt.want {
				t.Errorf("float32ToF16(%g) = %#04x, want %#04x", tt.in, got, tt.want)
			}
		})
	}
	if got := float32ToF16(float32(math.NaN())); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
		t.Errorf("NaN -> %#04x, not a NaN", got)
	}
}

// TestF16RoundTripExhaustive: every non-NaN half survives half -> float32 -> half.
func TestF16RoundTripExhaustive(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		if h&0x7c00 == 0x7c00 && h&0x3ff != 0 {
			continue
		}
		if got := float32ToF16(f16ToFloat32(uint16(h))); got != uint16(h) {
			t.Fatalf("%#04x -> %g -> %#04x", h, f16ToFloat32(uint16(h)), got)
		}
	}
}

// TestF16MatchesFloat64Rounding checks the half rounding against rounding
// done in float64 arithmetic on a sweep of values.
func TestF16MatchesFloat64Rounding(t *testing.T) {
	for b := uint32(0x33000000); b < 0x47800000; b += 0x1f3 {
		f := math.Float32frombits(b)
		h := float32ToF16(f)
		if h == 0x7c00 { // IEEE rounds |f| >= 65520 to Inf; tested above
			continue
		}
		got := float64(f16ToFloat32(h))
		// The neighbours of the result must not be closer.
		for _, n := range []uint16{h - 1, h + 1} {
			if n&0x7c00 == 0x7c00 {
				continue
			}
			d, dn := math.Abs(got-float64(f)), math.Abs(float64(f16ToFloat32(n))-float64(f))
			if dn < d || (dn == d && h&1 == 1) {
				t.Fatalf("%g -> %#04x (%g), but %#04x (%g) is nearer or even", f, h, got, n, f16ToFloat32(n))
			}
		}
	}
}

func TestFloat32ToBF16(t *testing.T) {
	tests := []struct {
		name string
		in   float32
		want uint16
	}{
		{"one", 1, 0x3f80},
		{"minus one", -1, 0xbf80},
		{"tie to even down", math.Float32frombits(0x3f808000), 0x3f80},
		{"tie to even up", math.Float32frombits(0x3f818000), 0x3f82},
		{"above tie", math.Float32frombits(0x3f808001), 0x3f81},
		{"max float rounds to inf", math.MaxFloat32, 0x7f80},
		{"inf", float32(math.Inf(-1)), 0xff80},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := float32ToBF16(tt.in); got != tt.want {
				t.Errorf("float32ToBF16(%g) = %#04x, want %#04x", tt.in, got, tt.want)
			}
		})
	}
	if got := float32ToBF16(math.Float32frombits(0x7f800001)); got&0x7f80 != 0x7f80 || got&0x7f == 0 {
		t.Errorf("NaN with a low payload -> %#04x, not a NaN", got)
	}
}

func TestTensorConvertRoundTrip(t *testing.T) {
	v := []float32{0, 1, -2.5, 3.140625, 1e-3, -65504}
	for _, dt := range []DType{F64, F32, F16, BF16} {
		t.Run(string(dt), func(t *testing.T) {
			tn := FromFloat32("x", []int{2, 3}, v, dt)
			if err := tn.Validate(); err != nil {
				t.Fatal(err)
			}
			got, err := tn.Float32s()
			if err != nil {
				t.Fatal(err)
			}
			tol := map[DType]float64{F64: 0, F32: 0, F16: 1.0 / 1024, BF16: 1.0 / 128}[dt]
			for i := range v {
				if d := math.Abs(float64(got[i] - v[i])); d > tol*math.Abs(float64(v[i])) {
					t.Errorf("element %d: got %g, want %g", i, got[i], v[i])
				}
			}
			back, err := tn.Convert(F32)
			if err != nil {
				t.Fatal(err)
			}
			again, err := back.Convert(dt)
			if err != nil {
				t.Fatal(err)
			}
			if string(again.Data) != string(tn.Data) {
				t.Errorf("%s -> F32 -> %s changed the bytes", dt, dt)
			}
		})
	}
}

func TestCheckFinite(t *testing.T) {
	for _, dt := range []DType{F64, F32, F16, BF16} {
		for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
			tn := FromFloat64("w", []int{3}, []float64{1, bad, 2}, dt)
			err := tn.CheckFinite()
			if err == nil {
				t.Errorf("%s with %v: no error", dt, bad)
				continue
			}
			if want := `tensor "w": element 1 is not finite: non-finite value`; err.Error() != want {
				t.Errorf("%s: error %q, want %q", dt, err, want)
			}
		}
		if err := FromFloat32("ok", []int{2}, []float32{1, -1}, dt).CheckFinite(); err != nil {
			t.Errorf("%s finite: %v", dt, err)
		}
	}
}
