package checkpoint

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/internal/blas"
	"github.com/rwkv-go/rwkv-go/internal/fsutil"
)

// Adapter files in RWKV-PEFT's names (NEXT-ARCH §4.1). Every file is a flat dict of tensors,
// names without a "model." prefix, in a torch.save .pth (WriteAdapterPTH) or safetensors:
//
//   - adapter file (what RWKV-PEFT saves each epoch, rwkv-N.pth): for each adapted Linear
//     <module> (e.g. blocks.3.att.key, whose base weight is <module>.weight [out,in])
//     <module>.lora_A [r,in] and <module>.lora_B [out,r]; plus the train_parts, base tensors
//     saved whole (norms, time_* vectors), under their base names and shapes;
//   - PiSSA init file (init_pissa.pth): <module>.init_lora_A [r,in] and .init_lora_B [out,r],
//     the adapter as initialised, which merging needs: W ← (W − B0·A0) + B·A;
//   - state file: blocks.N.att.time_state for every layer, the initial WKV state:
//     x052, x060 and x070 [H,N,N] in [value][key] layout (RWKV-PEFT's and RWKV-LM's kernels; ChatRWKV's
//     RWKV-5/6 loader transposes it into its [key][value] state); RWKV-4 [3,C], the rows
//     aa, bb, pp stacked in that order. RWKV-PEFT has no RWKV-4 state tuning, so this layout
//     is rwkv-go's: it is ChatRWKV's v4 state[5l+1], [5l+2], [5l+3] (att_aa, att_bb, att_pp)
//     and rwkv-go's WKV state for one sequence, with the token-shift states (att_xx, ffn_xx)
//     left at zero as RWKV-PEFT does for x070. pp is a log-scale maximum: store it in F32 or
//     BF16 (F16 overflows to -Inf below -65504; an empty state is aa = bb = pp = 0, which acts
//     like ChatRWKV's pp = -1e30 because aa and bb are zero).
//
// Reading accepts the "model."-prefixed form of every name and strips it: RWKV-PEFT's newer
// merge.py expects (and some of its tools write) init keys as model.<module>.init_lora_A, and
// a file of one form fed to a tool expecting the other fails with KeyError
// 'blocks.0.att.receptance.init_lora_A' (RWKV-PEFT issue #54). Writing always uses the
// unprefixed names of RWKV-PEFT's adapter files.
const (
	LoRASuffixA     = ".lora_A"
	LoRASuffixB     = ".lora_B"
	InitSuffixA     = ".init_lora_A"
	InitSuffixB     = ".init_lora_B"
	TimeStateSuffix = ".att.time_state"
	modelPrefix     = "model."
)

// DefaultTrainParts is RWKV-PEFT's --train_parts default: base tensors whose name contains
// "time" or "ln" may be trained (and saved) with the adapter.
var DefaultTrainParts = []string{"time", "ln"}

// AdapterRules is what an adapter file may hold besides its LoRA pairs and states.
type AdapterRules struct {
	// Rank is the expected r of every pair; 0 takes the file's (one r for all modules).
	Rank int
	// TrainParts are substrings of base tensor names that may be saved whole; nil means
	// DefaultTrainParts, an empty non-nil slice means none.
	TrainParts []string
}

// LoRAPair is one adapted Linear: Module is its name ("blocks.3.att.key"), A [r,in] and
// B [out,r] its factors, named Module+".lora_A"/".lora_B" (or the init_ names).
type LoRAPair struct {
	Module string
	A, B   Tensor
}

// Adapter is the content of adapter, init and state files, checked against a base model.
type Adapter struct {
	Rank   int        // r of the pairs (0 when there are none)
	LoRA   []LoRAPair // trained pairs, in the base model's order
	Init   []LoRAPair // PiSSA initial pairs, in the base model's order
	Parts  []Tensor   // train_parts: whole base tensors, in the base model's order
	States []Tensor   // blocks.N.att.time_state, by layer
}

var (
	loraName  = regexp.MustCompile(`^(blocks\.\d+\.(?:att|ffn)\.[A-Za-z0-9_]+)\.(init_lora_A|init_lora_B|lora_A|lora_B)$`)
	stateName = regexp.MustCompile(`^blocks\.(\d+)\.att\.time_state$`)
)

// LoRATargets lists the modules of a base model that can carry an adapter, in its order: the
// blocks' att and ffn Linear layers (a 2-D <module>.weight), never emb, head or x070's small
// w1/a1/v1/g1 matrices (which have no .weight suffix).
func LoRATargets(base []arch.Spec) []string {
	var out []string
	for _, s := range base {
		m, ok := strings.CutSuffix(s.Name, ".weight")
		if ok && len(s.Shape) == 2 && loraName.MatchString(m+LoRASuffixA) {
			out = append(out, m)
		}
	}
	return out
}

// StateShape is the shape of blocks.N.att.time_state for a base model: [H,N,N] for x052, x060
// and x070 (H = C/head_size; [value][key], RWKV-PEFT's layout), [3,C] for RWKV-4.
func StateShape(d arch.Dims) ([]int, error) {
	switch d.Arch.Resolve() {
	case arch.X052, arch.X060, arch.X070:
		return []int{d.Heads(), d.HeadSize, d.HeadSize}, nil
	case arch.X040:
		return []int{3, d.Embd}, nil
	}
	return nil, fmt.Errorf("adapter: no state layout for %s", d.Arch.Title())
}

// CheckAdapter sorts the tensors of one or more adapter files (adapter, init and state files
// may be passed together) into an Adapter, checking every name and shape against the base
// model's tensor list: a pair's module must be a LoRA target of the base with both factors
// present, A [r,in] and B [out,r] for its weight [out,in] and one r throughout (rules.Rank
// when set); a state must be for an existing layer with StateShape; any other tensor must be
// a base tensor of the same shape that rules.TrainParts allows. Every error names the tensor.
// Names with a "model." prefix are accepted and stripped.
func CheckAdapter(ts []Tensor, base []arch.Spec, rules AdapterRules) (*Adapter, error) {
	dims, err := arch.Infer(base)
	if err != nil {
		return nil, fmt.Errorf("adapter: the base model: %w", err)
	}
	shapes := make(map[string][]int, len(base))
	order := make(map[string]int, len(base))
	for i, s := range base {
		shapes[s.Name], order[s.Name] = s.Shape, i
	}
	parts := rules.TrainParts
	if parts == nil {
		parts = DefaultTrainParts
	}
	stShape, stErr := StateShape(dims)

	type half struct{ a, b *Tensor }
	pairs := map[string]*half{} // keyed by module, plus "init:" for init pairs
	seen := map[string]bool{}
	a := &Adapter{Rank: rules.Rank}
	for i := range ts {
		t := ts[i]
		t.Name = strings.TrimPrefix(t.Name, modelPrefix)
		if seen[t.Name] {
			return nil, fmt.Errorf("adapter tensor %q appears twice (with and without the model. prefix?): %w", t.Name, ErrTensors)
		}
		seen[t.Name] = true
		if !t.DType.IsFloat() {
			return nil, fmt.Errorf("adapter tensor %q has dtype %s, want a float type: %w", t.Name, t.DType, ErrDType)
		}
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("adapter tensor %q: %w", t.Name, err)
		}
		if err := t.CheckFinite(); err != nil {
			return nil, fmt.Errorf("adapter: %w", err)
		}
		if m := loraName.FindStringSubmatch(t.Name); m != nil {
			module, kind := m[1], m[2]
			if w, ok := shapes[module+".weight"]; !ok || len(w) != 2 {
				return nil, fmt.Errorf("adapter tensor %q: the base model has no Linear %s.weight to adapt: %w", t.Name, module, ErrTensors)
			}
			key := module
			if strings.HasPrefix(kind, "init_") {
				key = "init:" + module
			}
			h := pairs[key]
			if h == nil {
				h = &half{}
				pairs[key] = h
			}
			if strings.HasSuffix(kind, "A") {
				h.a = &t
			} else {
				h.b = &t
			}
			continue
		}
		if m := stateName.FindStringSubmatch(t.Name); m != nil {
			l, _ := strconv.Atoi(m[1])
			if l >= dims.Layers {
				return nil, fmt.Errorf("adapter tensor %q: the base model has %d layers: %w", t.Name, dims.Layers, ErrTensors)
			}
			if stErr != nil {
				return nil, fmt.Errorf("adapter tensor %q: %w", t.Name, stErr)
			}
			if !slices.Equal(t.Shape, stShape) {
				return nil, fmt.Errorf("adapter tensor %q has shape %v, want %v for this %s base: %w", t.Name, t.Shape, stShape, dims.Arch.Title(), ErrTensors)
			}
			a.States = append(a.States, t)
			continue
		}
		want, ok := shapes[t.Name]
		if !ok {
			return nil, fmt.Errorf("adapter tensor %q is neither a LoRA factor (<module>.lora_A/B, .init_lora_A/B), a state (blocks.N.att.time_state) nor a base tensor: %w", t.Name, ErrTensors)
		}
		if !slices.ContainsFunc(parts, func(p string) bool { return strings.Contains(t.Name, p) }) {
			return nil, fmt.Errorf("adapter tensor %q is a base tensor outside train_parts %q (a full model? load it as the base instead): %w", t.Name, parts, ErrTensors)
		}
		if !slices.Equal(t.Shape, want) {
			return nil, fmt.Errorf("adapter tensor %q has shape %v, the base's is %v: %w", t.Name, t.Shape, want, ErrTensors)
		}
		a.Parts = append(a.Parts, t)
	}

	keys := make([]string, 0, len(pairs))
	for k := range pairs {
		keys = append(keys, k)
	}
	slices.Sort(keys) // errors in a stable order
	for _, key := range keys {
		h := pairs[key]
		module, isInit := strings.CutPrefix(key, "init:")
		sa, sb := LoRASuffixA, LoRASuffixB
		if isInit {
			sa, sb = InitSuffixA, InitSuffixB
		}
		if h.a == nil || h.b == nil {
			have, miss := module+sa, module+sb
			if h.a == nil {
				have, miss = miss, have
			}
			return nil, fmt.Errorf("adapter tensor %q has no partner %q: %w", have, miss, ErrTensors)
		}
		w := shapes[module+".weight"]
		out, in := w[0], w[1]
		if len(h.a.Shape) != 2 || h.a.Shape[1] != in || h.a.Shape[0] < 1 {
			return nil, fmt.Errorf("adapter tensor %q has shape %v, want [r,%d] for %s.weight %v: %w", h.a.Name, h.a.Shape, in, module, w, ErrTensors)
		}
		r := h.a.Shape[0]
		if a.Rank == 0 {
			a.Rank = r
		}
		if r != a.Rank {
			return nil, fmt.Errorf("adapter tensor %q has rank %d, want %d: %w", h.a.Name, r, a.Rank, ErrTensors)
		}
		if !slices.Equal(h.b.Shape, []int{out, r}) {
			return nil, fmt.Errorf("adapter tensor %q has shape %v, want [%d,%d] for %s.weight %v and rank %d: %w", h.b.Name, h.b.Shape, out, r, module, w, r, ErrTensors)
		}
		p := LoRAPair{Module: module, A: *h.a, B: *h.b}
		if isInit {
			a.Init = append(a.Init, p)
		} else {
			a.LoRA = append(a.LoRA, p)
		}
	}
	byBase := func(x, y LoRAPair) int { return order[x.Module+".weight"] - order[y.Module+".weight"] }
	slices.SortFunc(a.LoRA, byBase)
	slices.SortFunc(a.Init, byBase)
	slices.SortFunc(a.Parts, func(x, y Tensor) int { return order[x.Name] - order[y.Name] })
	slices.SortFunc(a.States, func(x, y Tensor) int { return layerNum(x.Name) - layerNum(y.Name) })
	return a, nil
}

func layerNum(name string) int {
	m := stateName.FindStringSubmatch(name)
	l, _ := strconv.Atoi(m[1])
	return l
}

// Tensors is what RWKV-PEFT's adapter file holds: every pair's lora_A and lora_B, the
// train_parts, then the states. The init pairs go to their own file (InitTensors).
func (a *Adapter) Tensors() []Tensor {
	var out []Tensor
	for _, p := range a.LoRA {
		out = append(out, renamed(p.A, p.Module+LoRASuffixA), renamed(p.B, p.Module+LoRASuffixB))
	}
	out = append(out, a.Parts...)
	return append(out, a.States...)
}

// InitTensors is the PiSSA init file: <module>.init_lora_A and .init_lora_B of every pair.
func (a *Adapter) InitTensors() []Tensor {
	var out []Tensor
	for _, p := range a.Init {
		out = append(out, renamed(p.A, p.Module+InitSuffixA), renamed(p.B, p.Module+InitSuffixB))
	}
	return out
}

func renamed(t Tensor, name string) Tensor {
	t.Name = name
	return t
}

// ReadAdapter reads adapter, PiSSA init and state files (each a .pth written by torch.save or
// WriteAdapterPTH, or a safetensors file; told apart by content) and checks their tensors
// together with CheckAdapter against the base model's tensor list: pass an adapter and its
// init file to merge a PiSSA adapter.
func ReadAdapter(base []arch.Spec, rules AdapterRules, paths ...string) (*Adapter, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("adapter: no file given")
	}
	var ts []Tensor
	for _, p := range paths {
		t, err := readAdapterFile(p)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t...)
	}
	a, err := CheckAdapter(ts, base, rules)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", strings.Join(paths, " + "), err)
	}
	return a, nil
}

func readAdapterFile(path string) ([]Tensor, error) {
	f, _, err := fsutil.OpenRegular(path)
	if err != nil {
		return nil, fmt.Errorf("adapter: %w", err)
	}
	magic := make([]byte, 4)
	_, err = io.ReadFull(f, magic)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("adapter %s: too short: %w", path, ErrMalformed)
	}
	if bytes.Equal(magic, []byte("PK\x03\x04")) {
		return ReadPTH(path)
	}
	sf, err := OpenSafetensors(path)
	if err != nil {
		return nil, fmt.Errorf("adapter: %w", err)
	}
	return sf.Tensors, nil
}

// WriteAdapterPTH writes ts (Adapter.Tensors, InitTensors, or a state file's tensors) as a
// torch.save state dict at path, atomically; names are written as given.
func WriteAdapterPTH(path string, ts []Tensor) error {
	if len(ts) == 0 {
		return fmt.Errorf("adapter %s: nothing to write", path)
	}
	for _, t := range ts {
		if err := t.CheckFinite(); err != nil {
			return fmt.Errorf("adapter %s: %w", path, err)
		}
	}
	if err := WriteFileAtomic(path, func(w io.Writer) error { return WritePTH(w, ts) }); err != nil {
		return fmt.Errorf("adapter %s: %w", path, err)
	}
	return nil
}

// MergeAdapter folds an adapter into a copy of the base weights, as RWKV-PEFT's merge scripts
// do, and returns the full model in the base's names, order and dtypes (each merged tensor is
// computed in float64 and rounded once to its base dtype): for a LoRA adapter (no Init pairs)
// W ← W + scale·B·A with scale = α/r (merge_lora.py); for PiSSA (Init pairs present for every
// adapted module) W ← (W − B0·A0) + B·A, scale ignored (merge_pissa.py), where W is the
// original base weight, not W_res; train_parts replace their base tensors. States are not
// merged: the base layouts have no time_state (write them as a state file; ChatRWKV's RWKV-5/6
// loader also reads them appended to the model dict, as merge_state.py does). The base is
// left unchanged.
func MergeAdapter(base []Tensor, a *Adapter, scale float64) ([]Tensor, error) {
	idx := make(map[string]int, len(base))
	for i, t := range base {
		idx[t.Name] = i
	}
	out := slices.Clone(base)
	init := make(map[string]LoRAPair, len(a.Init))
	for _, p := range a.Init {
		init[p.Module] = p
	}
	if len(a.Init) > 0 && len(a.Init) != len(a.LoRA) {
		return nil, fmt.Errorf("adapter merge: %d PiSSA init pairs for %d trained pairs; pass the init file of this adapter: %w", len(a.Init), len(a.LoRA), ErrTensors)
	}
	for _, p := range a.LoRA {
		name := p.Module + ".weight"
		i, ok := idx[name]
		if !ok {
			return nil, fmt.Errorf("adapter merge: the base has no %q for %q: %w", name, p.A.Name, ErrTensors)
		}
		w := base[i]
		if len(w.Shape) != 2 || !slices.Equal(p.A.Shape[1:], w.Shape[1:]) || p.B.Shape[0] != w.Shape[0] {
			return nil, fmt.Errorf("adapter merge: %q %v and %q %v do not fit %q %v: %w", p.A.Name, p.A.Shape, p.B.Name, p.B.Shape, name, w.Shape, ErrTensors)
		}
		rows, cols, r := w.Shape[0], w.Shape[1], p.A.Shape[0]
		wv, err := w.Float64s()
		if err != nil {
			return nil, fmt.Errorf("adapter merge %q: %w", name, err)
		}
		add := func(pair LoRAPair, s float64) error {
			av, err := pair.A.Float64s()
			if err != nil {
				return fmt.Errorf("adapter merge %q: %w", pair.A.Name, err)
			}
			bv, err := pair.B.Float64s()
			if err != nil {
				return fmt.Errorf("adapter merge %q: %w", pair.B.Name, err)
			}
			blas.Gemm(false, false, rows, cols, r, s, bv, r, av, cols, 1, wv, cols)
			return nil
		}
		s := scale
		if len(a.Init) > 0 {
			p0, ok := init[p.Module]
			if !ok {
				return nil, fmt.Errorf("adapter merge: no %s%s in the PiSSA init file for %q: %w", p.Module, InitSuffixA, p.A.Name, ErrTensors)
			}
			if err := add(p0, -1); err != nil {
				return nil, err
			}
			s = 1
		}
		if err := add(p, s); err != nil {
			return nil, err
		}
		out[i] = FromFloat64(name, w.Shape, wv, w.DType)
		if err := out[i].CheckFinite(); err != nil {
			return nil, fmt.Errorf("adapter merge: %w", err)
		}
	}
	for _, t := range a.Parts {
		i, ok := idx[t.Name]
		if !ok {
			return nil, fmt.Errorf("adapter merge: the base has no %q: %w", t.Name, ErrTensors)
		}
		c, err := t.Convert(base[i].DType)
		if err != nil {
			return nil, fmt.Errorf("adapter merge %q: %w", t.Name, err)
		}
		out[i] = c
	}
	return out, nil
}

// AdapterOnly reports whether ts hold adapter tensors (LoRA factors or time_state) and no
// emb.weight: an adapter file, or a checkpoint of a peft run, which holds only what trained.
// Callers expecting a whole model name the fix with it.
func AdapterOnly(ts []Tensor) bool {
	adapter, emb := false, false
	for _, t := range ts {
		n := strings.TrimPrefix(t.Name, modelPrefix)
		adapter = adapter || loraName.MatchString(n) || stateName.MatchString(n)
		emb = emb || n == "emb.weight"
	}
	return adapter && !emb
}

// AdapterOnlyHint is the advice for a whole model's reader given an AdapterOnly file.
const AdapterOnlyHint = "it holds only adapter tensors (an adapter file, or a checkpoint of a peft.mode run): pass the base model, and the run's out_dir/adapter.pth as --adapter (rwkv-eval: state.pth as --state)"
