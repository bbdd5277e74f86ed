package optim

import "math"

// powInt returns x**n for n >= 0 correctly rounded but for vanishingly
// rare cases, as CPython's float ** (C pow) gives it; torch computes the
// bias corrections 1 - beta**t that way. math.Pow multiplies in plain
// float64 and can be an ulp off (0.9**6), which shows in goldens. This
// squares in double-double arithmetic, exact products via FMA.
func powInt(x float64, n int64) float64 {
	rh, rl := 1.0, 0.0 // result
	bh, bl := x, 0.0   // x**(2**k)
	for ; n > 0; n >>= 1 {
		if n&1 == 1 {
			rh, rl = ddMul(rh, rl, bh, bl)
		}
		bh, bl = ddMul(bh, bl, bh, bl)
	}
	return rh + rl
}

// ddMul multiplies two double-double numbers (hi+lo each).
func ddMul(ah, al, bh, bl float64) (hi, lo float64) {
	p := ah * bh
	e := math.FMA(ah, bh, -p)
	e += ah*bl + al*bh
	hi = p + e
	lo = e - (hi - p)
	return hi, lo
}
