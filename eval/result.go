package eval

import "math"

// Result is a perplexity measurement over a token stream.
type Result struct {
	Mode         Mode    `json:"mode"`
	Tokens       int64   `json:"tokens"`                  // tokens scored
	Loss         float64 `json:"loss"`                    // mean negative log-likelihood, nats per token
	PPL          float64 `json:"ppl"`                     // exp(loss)
	BitsPerToken float64 `json:"bits_per_token"`          // loss / ln 2
	Bytes        int64   `json:"bytes,omitempty"`         // UTF-8 bytes of the scored tokens, when known
	BitsPerByte  float64 `json:"bits_per_byte,omitempty"` // total bits / Bytes, when Bytes is known
	// Buckets is the loss as a function of stream position (see Options.BucketSize).
	Buckets []Bucket `json:"buckets,omitempty"`
}

// Bucket is the loss of the scored tokens whose position in the stream (the index of the target
// token, which is also how many tokens precede it) lies in [Start, Start+Size).
type Bucket struct {
	Start  int64   `json:"start"`
	Tokens int64   `json:"tokens"`
	Loss   float64 `json:"loss"`
	PPL    float64 `json:"ppl"`
}

// SetBytes records that the scored tokens decode to n UTF-8 bytes and sets BitsPerByte.
// n <= 0 clears both.
func (r *Result) SetBytes(n int64) {
	if n <= 0 {
		r.Bytes, r.BitsPerByte = 0, 0
		return
	}
	r.Bytes = n
	r.BitsPerByte = r.BitsPerToken
	if n != r.Tokens {
		r.BitsPerByte = r.BitsPerToken * float64(r.Tokens) / float64(n)
	}
}

// tally accumulates summed NLL overall and per position bucket.
type tally struct {
	sum     float64
	n       int64
	size    int64 // bucket size; 0: no buckets
	buckets []Bucket
	sums    []float64
	mask    func(pos int) bool // nil: every target counts
}

// add records the NLL of the target at stream position pos.
func (t *tally) add(pos int64, nll float64) {
	if t.mask != nil && !t.mask(int(pos)) {
		return
	}
	t.sum += nll
	t.n++
	if t.size <= 0 {
		return
	}
	i := int(pos / t.size)
	for len(t.buckets) <= i {
		t.buckets = append(t.buckets, Bucket{Start: int64(len(t.buckets)) * t.size})
		t.sums = append(t.sums, 0)
	}
	t.buckets[i].Tokens++
	t.sums[i] += nll
}

func (t *tally) result(mode Mode) Result {
	loss := t.sum / float64(t.n)
	r := Result{Mode: mode, Tokens: t.n, Loss: loss, PPL: math.Exp(loss), BitsPerToken: loss / math.Ln2}
	for i, b := range t.buckets {
		if b.Tokens == 0 {
			continue
		}
		b.Loss = t.sums[i] / float64(b.Tokens)
		b.PPL = math.Exp(b.Loss)
		r.Buckets = append(r.Buckets, b)
	}
	return r
}
