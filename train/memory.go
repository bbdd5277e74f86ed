package train

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/rwkv-go/rwkv-go/arch"
)

// MemoryEstimate is a rough lower estimate of the memory a training job needs, in bytes,
// computed in float64 so that absurd sizes cannot overflow.
type MemoryEstimate struct {
	Params      float64 // weights, gradients and the two AdamW moments: 16 bytes a parameter
	Activations float64 // what the graph keeps for the backward pass of one micro-batch
	Logits      float64 // the logits and their gradient: micro_bsz × ctx_len × vocab_size
}

// Total is the sum of the parts.
func (m MemoryEstimate) Total() float64 { return m.Params + m.Activations + m.Logits }

// activationFloats is how many floats of n_embd (plus two of dim_ffn) a token keeps per layer
// for the backward pass: a deliberately low count, so the estimate errs on the small side
// (measured for x040 at L1-L3 D256 ctx 128 B 8: about 31·C).
const activationFloats = 12

// activationFloatsX070 is the same for RWKV-7, whose time mix keeps more per token (six mixes,
// r, w, k, v, a, b, κ, the LoRA activations, GroupNorm); the WKV-7 backward adds the state at
// every 16th token, C·head_size/16 floats a token (measured at D256 head 64: about 52·C).
const activationFloatsX070 = 20

// activationFloatsX052 and activationFloatsX060 are the same for RWKV-5.2 (four token-shift
// mixes, r, k, v, g, GroupNorm) and RWKV-6 (six mixes and the LoRA activations, the decay); the
// WKV-5/6 backward adds the state at every 16th token, as x070's (measured at D256 head 64:
// about 41·C for x052, 51·C for x060).
const (
	activationFloatsX052 = 14
	activationFloatsX060 = 20
)

// EstimateMemory estimates the memory of the job. It assumes a valid config (positive sizes).
func (c Config) EstimateMemory() MemoryEstimate {
	L, C, V := float64(c.Model.Layers), float64(c.Model.Embd), float64(c.Model.Vocab)
	F := float64(c.Model.DimFFN())
	// embedding and head V×C each; per block: time mix 4 C×C, channel mix C×C + 2 F×C, and
	// 11 vectors of C (five mixes, decay, first, two layer norms); ln0, ln_out. Exact.
	params := 2*V*C + L*(5*C*C+2*F*C+11*C) + 4*C
	perToken := activationFloats*C + 2*F // floats a token keeps per layer
	if c.Model.Arch.Resolve() == arch.X070 {
		// per block: receptance, key, value, output 4 C×C, channel mix 2 F×C, the four LoRAs
		// 2·C·(Dw+Da+Dv+Dg) (layer 0's unused v1/v2 counted), 19 vectors of C; ln0, ln_out.
		// Exact with layer 0's v0/v1/v2 (a few per mille high without them).
		r := c.Model.LoRA()
		lora := float64(r.W) + float64(r.A) + float64(r.V) + float64(r.G)
		params = 2*V*C + L*(4*C*C+2*F*C+2*C*lora+19*C) + 4*C
		perToken = activationFloatsX070*C + 2*F + C*float64(c.Model.HeadDim())/16
	}
	if a := c.Model.Arch.Resolve(); a == arch.X052 || a == arch.X060 {
		// per block: receptance, key, value, output, gate 5 C×C, channel mix C×C + 2 F×C, and
		// x052's 14 vectors of C (four mixes, time_decay and time_faaaa [H,N], ln_x, two ffn
		// mixes, ln1, ln2), x060's 16 (six mixes, decay, bonus, ln_x, two ffn mixes, ln1,
		// ln2) plus its LoRAs time_maa_w1/w2 10·M·C and time_decay_w1/w2 2·W·C; ln0, ln_out.
		// Exact.
		d := c.Model.Dims()
		block := 6*C*C + 2*F*C + 14*C
		if a == arch.X060 {
			block = 6*C*C + 2*F*C + 16*C + 10*float64(d.LoRA.Mix)*C + 2*float64(d.LoRA.W)*C
		}
		params = 2*V*C + L*block + 4*C
		perToken = activationFloatsX052*C + 2*F + C*float64(max(d.HeadSize, 1))/16
		if a == arch.X060 {
			perToken += (activationFloatsX060 - activationFloatsX052) * C
		}
	}
	T := float64(c.Model.CtxLen)
	if c.Train.ChunkLen > 0 && c.Train.ChunkLen < c.Model.CtxLen {
		T = float64(c.Train.ChunkLen) // the graph holds one chunk
	}
	tokens := float64(c.Train.MicroBsz) * T
	paramBytes := 16 * params
	if c.PEFT.On() {
		// a frozen base keeps only its weights; the adapters (LoRA: r·(in+out) per adapted
		// Linear, at most the 7 of a block; state: one state a layer) take the 16 bytes
		var trained float64
		switch c.PEFT.Mode {
		case PEFTState:
			trained = 3 * L * C // RWKV-4: aa, bb, pp
			if n := c.Model.Dims().HeadSize; n > 0 {
				trained = L * C * float64(n) // [H,N,N] a layer
			}
		default:
			trained = L * float64(c.PEFT.LoRAR) * (12*C + 2*(C+F))
		}
		paramBytes = 4*params + 16*trained
	}
	return MemoryEstimate{
		Params:      paramBytes,
		Activations: 4 * tokens * L * perToken,
		Logits:      2 * 4 * tokens * V,
	}
}

// ErrMemory is wrapped (with ErrConfig) by the error of a config whose memory estimate exceeds
// the machine's. Validate checks memory only when everything else is valid, so a config refused
// with ErrMemory alone is valid on a larger machine.
var ErrMemory = errors.New("not enough memory")

// memTotal returns the machine's memory in bytes (MemTotal of /proc/meminfo); ok is false
// where it cannot be read. Tests replace it.
var memTotal = func() (bytes float64, ok bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, found := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !found {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, false
		}
		kb, err := strconv.ParseFloat(fields[0], 64)
		if err != nil || kb <= 0 {
			return 0, false
		}
		return kb * 1024, true
	}
	return 0, false
}

// checkMemory refuses a config whose estimated memory exceeds the machine's, naming the keys
// of the part that dominates.
func (c Config) checkMemory() error {
	total, ok := memTotal()
	if !ok {
		return nil
	}
	m := c.EstimateMemory()
	if m.Total() <= total {
		return nil
	}
	mo, tr := c.Model, c.Train
	ctx := fmt.Sprintf("model.ctx_len = %d", mo.CtxLen)
	if tr.ChunkLen > 0 && tr.ChunkLen < mo.CtxLen {
		ctx = fmt.Sprintf("train.chunk_len = %d", tr.ChunkLen)
	}
	var keys string
	switch {
	case m.Params >= m.Activations && m.Params >= m.Logits:
		keys = fmt.Sprintf("the parameters (model.n_layer = %d, model.n_embd = %d, model.vocab_size = %d, model.dim_ffn = %d)",
			mo.Layers, mo.Embd, mo.Vocab, mo.FFN)
	case m.Activations >= m.Logits:
		keys = fmt.Sprintf("the activations (train.micro_bsz = %d, %s, model.n_layer = %d, model.n_embd = %d)",
			tr.MicroBsz, ctx, mo.Layers, mo.Embd)
	default:
		keys = fmt.Sprintf("the logits (train.micro_bsz = %d, %s, model.vocab_size = %d)", tr.MicroBsz, ctx, mo.Vocab)
	}
	return fmt.Errorf("%w: %w: the job needs at least %s of memory, mostly for %s, but this machine has %s; lower those keys",
		ErrConfig, ErrMemory, humanBytes(m.Total()), keys, humanBytes(total))
}

func humanBytes(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	return fmt.Sprintf("%.3g %s", b, units[i])
}
