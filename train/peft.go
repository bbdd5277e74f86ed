package train

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/model"
)

// PEFT modes (peft.mode).
const (
	PEFTNone  = "none"
	PEFTLoRA  = "lora"
	PEFTPiSSA = "pissa"
	PEFTState = "state"
)

// PEFTConfig is the peft section: parameter-efficient fine-tuning as RWKV-PEFT does it
// (NEXT-ARCH §4.1). Lists are comma-separated strings, so that the config stays one flat set
// of keys that flags and environment variables can set.
type PEFTConfig struct {
	// Mode is none (full fine-tuning), lora, pissa or state.
	Mode        string  `mapstructure:"mode" yaml:"mode"`
	LoRAR       int     `mapstructure:"lora_r" yaml:"lora_r"`
	LoRAAlpha   float64 `mapstructure:"lora_alpha" yaml:"lora_alpha"`
	LoRADropout float64 `mapstructure:"lora_dropout" yaml:"lora_dropout"`
	// Targets are the adapted Linears inside a block ("att.key,ffn.value"); empty means
	// model.Config.DefaultLoRATargets.
	Targets string `mapstructure:"targets" yaml:"targets"`
	// TrainParts are substrings of base tensor names trained with a LoRA/PiSSA adapter
	// (RWKV-PEFT's --train_parts); "none" for none.
	TrainParts string `mapstructure:"train_parts" yaml:"train_parts"`
	SVDNiter   int    `mapstructure:"svd_niter" yaml:"svd_niter"`
	// Load is an adapter or state file to continue from.
	Load string `mapstructure:"load" yaml:"load"`
}

// DefaultPEFTConfig is full fine-tuning, with RWKV-PEFT's script values for LoRA.
func DefaultPEFTConfig() PEFTConfig {
	return PEFTConfig{Mode: PEFTNone, LoRAR: 32, LoRAAlpha: 32, TrainParts: "time,ln", SVDNiter: 4}
}

// On reports whether the run fine-tunes adapters rather than the whole model.
func (p PEFTConfig) On() bool { return p.Mode != PEFTNone && p.Mode != "" }

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// TrainPartList is train_parts as a list ("none": empty).
func (p PEFTConfig) TrainPartList() []string {
	if strings.TrimSpace(p.TrainParts) == "none" {
		return []string{}
	}
	return splitList(p.TrainParts)
}

// Check validates the section on its own.
func (p PEFTConfig) Check() error {
	return errors.Join(p.validate(Config{})...)
}

func (p PEFTConfig) validate(c Config) []error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...))
	}
	switch p.Mode {
	case PEFTNone, "":
		if p.Load != "" {
			bad("peft.load = %q with peft.mode = none: set peft.mode to lora or state, or clear peft.load", p.Load)
		}
		return errs
	case PEFTLoRA, PEFTPiSSA, PEFTState:
	default:
		bad("peft.mode = %q: want none, lora, pissa or state", p.Mode)
		return errs
	}
	if p.LoRAR < 1 {
		bad("peft.lora_r = %d: must be at least 1", p.LoRAR)
	}
	if !(p.LoRAAlpha > 0) {
		bad("peft.lora_alpha = %v: must be positive", p.LoRAAlpha)
	}
	if !(p.LoRADropout >= 0 && p.LoRADropout < 1) {
		bad("peft.lora_dropout = %v: must be in [0, 1)", p.LoRADropout)
	}
	if p.SVDNiter < 0 {
		bad("peft.svd_niter = %d: must not be negative", p.SVDNiter)
	}
	for _, t := range splitList(p.Targets) {
		if !strings.HasPrefix(t, "att.") && !strings.HasPrefix(t, "ffn.") {
			bad("peft.targets: %q is not a block's Linear; write att.<name> or ffn.<name>, e.g. att.key", t)
		}
	}
	if p.Mode == PEFTState && c.Train.ChunkLen > 0 && c.Train.ChunkLen < c.Model.CtxLen {
		bad("peft.mode = state with train.chunk_len = %d: state tuning trains the state every sample starts from; set train.chunk_len to 0", c.Train.ChunkLen)
	}
	if p.Mode == PEFTPiSSA && p.Load != "" {
		bad("peft.load with peft.mode = pissa is not supported yet: resume the run's checkpoint instead (--resume)")
	}
	return errs
}

// adapterFile is where the trainer writes the adapter-only file (RWKV-PEFT's names): state.pth
// for state tuning (only the time_state tensors, what RWKV-PEFT's state runs save), else
// adapter.pth.
func (t *Trainer) adapterFile() string {
	if t.cfg.PEFT.Mode == PEFTState {
		return filepath.Join(t.cfg.OutDir, "state.pth")
	}
	return filepath.Join(t.cfg.OutDir, "adapter.pth")
}

// AdapterFile is the adapter-only file the run writes ("" without peft).
func (t *Trainer) AdapterFile() string {
	if !t.cfg.PEFT.On() {
		return ""
	}
	return t.adapterFile()
}

// pissaInitFile is PiSSA's init file (init_lora_A/B), which merging needs.
func (t *Trainer) pissaInitFile() string { return filepath.Join(t.cfg.OutDir, "init_pissa.pth") }

// applyPEFT adds the adapters to the loaded or initialised base model, sets them (initialised,
// or from peft.load) and freezes everything else.
func (t *Trainer) applyPEFT(resuming bool) error {
	p := t.cfg.PEFT
	if !p.On() {
		return nil
	}
	m := t.Model
	seed := t.cfg.Train.Seed
	switch p.Mode {
	case PEFTLoRA, PEFTPiSSA:
		targets := splitList(p.Targets)
		if len(targets) == 0 {
			targets = m.Config.DefaultLoRATargets()
		}
		mods, err := m.LoRAModulesFor(targets)
		if err != nil {
			return fmt.Errorf("%w: peft.targets: %w", ErrConfig, err)
		}
		scale, dropout := p.LoRAAlpha/float64(p.LoRAR), p.LoRADropout
		if p.Mode == PEFTPiSSA {
			scale, dropout = 1, 0
		}
		if err := m.AddLoRA(mods, p.LoRAR, scale, dropout, seed); err != nil {
			return fmt.Errorf("%w: peft: %w", ErrConfig, err)
		}
		if p.Mode == PEFTLoRA {
			if err := m.InitLoRAParams(seed); err != nil {
				return err
			}
		} else if err := t.initPiSSA(mods, resuming); err != nil {
			return err
		}
		parts := p.TrainPartList()
		m.Freeze(func(name string) bool {
			if model.IsAdapter(name) {
				return true
			}
			for _, s := range parts {
				if strings.Contains(name, s) {
					return true
				}
			}
			return false
		})
	case PEFTState:
		m.AddTimeState()
		m.Freeze(model.IsAdapterState)
	}
	if p.Load != "" && !resuming {
		if err := t.loadAdapter(p.Load); err != nil {
			return err
		}
	}
	return nil
}

// initPiSSA replaces each target's weight by W_res and sets its pair from the weight's
// principal directions; a fresh run writes the init file. The randomised SVD draws from
// train.seed, so a resumed run recomputes the same W_res.
func (t *Trainer) initPiSSA(mods []string, resuming bool) error {
	m, p := t.Model, t.cfg.PEFT
	var init []checkpoint.Tensor
	for _, mod := range mods {
		w, a, b := m.Param(mod+".weight"), m.Param(mod+model.LoRASuffixA), m.Param(mod+model.LoRASuffixB)
		rng := rand.New(rand.NewPCG(t.cfg.Train.Seed, uint64(len(mod))*0x9E3779B97F4A7C15^fnv64(mod)))
		res, err := model.PiSSA(w.Float64s(), w.Shape[0], w.Shape[1], p.LoRAR, p.SVDNiter, rng)
		if err != nil {
			return fmt.Errorf("peft pissa %s: %w", mod, err)
		}
		for _, s := range []struct {
			p *model.Param
			v []float64
		}{{w, res.WRes}, {a, res.A}, {b, res.B}} {
			if err := s.p.SetFloat64s(s.v); err != nil {
				return err
			}
		}
		init = append(init, checkpoint.FromFloat32(mod+checkpoint.InitSuffixA, a.Shape, a.F32(), checkpoint.F32),
			checkpoint.FromFloat32(mod+checkpoint.InitSuffixB, b.Shape, b.F32(), checkpoint.F32))
	}
	if resuming || !t.leader() { // rank 0 writes the run's files
		return nil
	}
	if err := os.MkdirAll(t.cfg.OutDir, 0o755); err != nil {
		return err
	}
	if err := checkpoint.WriteAdapterPTH(t.pissaInitFile(), init); err != nil {
		return fmt.Errorf("peft pissa: %w", err)
	}
	t.log.Info("PiSSA init file", "path", t.pissaInitFile())
	return nil
}

func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// loadAdapter sets the adapters (and train_parts) from an adapter or state file.
func (t *Trainer) loadAdapter(path string) error {
	m := t.Model
	a, err := checkpoint.ReadAdapter(model.Specs(m.Config), checkpoint.AdapterRules{Rank: t.cfg.PEFT.LoRAR, TrainParts: t.cfg.PEFT.TrainPartList()}, path)
	if err != nil {
		return fmt.Errorf("peft.load: %w", err)
	}
	var ts []checkpoint.Tensor
	for _, pr := range a.LoRA {
		ts = append(ts, pr.A, pr.B)
	}
	ts = append(append(ts, a.Parts...), a.States...)
	if len(ts) == 0 {
		return fmt.Errorf("peft.load %s: no adapter, train_parts or state tensors", path)
	}
	for _, x := range ts {
		q := m.Param(x.Name)
		if q == nil || m.Frozen(x.Name) {
			return fmt.Errorf("peft.load %s: %q is not trained by this run (peft.mode = %s, peft.targets, peft.train_parts); fix the config or the file", path, x.Name, t.cfg.PEFT.Mode)
		}
		v, err := x.Float64s()
		if err != nil {
			return fmt.Errorf("peft.load %s: %w", path, err)
		}
		if err := q.SetFloat64s(v); err != nil {
			return fmt.Errorf("peft.load %s: %w", path, err)
		}
	}
	t.log.Info("loaded adapter", "path", path, "tensors", len(ts))
	return nil
}

// trainedTensors are the tensors the optimiser updates (adapters and train_parts), as
// named tensors: what a PEFT checkpoint and the adapter file hold.
func (t *Trainer) trainedTensors(dt checkpoint.DType) []checkpoint.Tensor {
	var out []checkpoint.Tensor
	for _, p := range t.params {
		out = append(out, checkpoint.FromFloat32(p.Name, p.Shape, p.Data, dt))
	}
	return out
}

// setTrained restores the trained tensors of a PEFT checkpoint.
func (t *Trainer) setTrained(ts []checkpoint.Tensor) error {
	if len(ts) != len(t.params) {
		return fmt.Errorf("%w: it holds %d tensors, this run trains %d (peft section changed?)", errBadCheckpoint, len(ts), len(t.params))
	}
	for i, x := range ts {
		p := t.params[i]
		if x.Name != p.Name || !slices.Equal(x.Shape, p.Shape) {
			return fmt.Errorf("%w: tensor %q %v where this run trains %q %v (peft section changed?)", errBadCheckpoint, x.Name, x.Shape, p.Name, p.Shape)
		}
		v, err := x.Float32s()
		if err != nil {
			return err
		}
		copy(p.Data, v)
	}
	return nil
}

// WriteAdapter writes the adapter-only file (out_dir/adapter.pth): LoRA pairs and train_parts
// in RWKV-PEFT's names, or the states of state tuning.
func (t *Trainer) WriteAdapter() (string, error) {
	if !t.cfg.PEFT.On() {
		return "", nil
	}
	if err := checkpoint.WriteAdapterPTH(t.adapterFile(), t.trainedTensors(checkpoint.F32)); err != nil {
		return "", err
	}
	return t.adapterFile(), nil
}

// MergedModel is the trained model as a full base model: the model itself without PEFT,
// else a copy with every LoRA/PiSSA pair folded into its weight (W + s·B·A; PiSSA's base
// already holds W_res) and train_parts in place. State tuning's states are not part of it.
func (t *Trainer) MergedModel() (*model.Model, error) {
	return MergeModel(t.Model)
}

// MergeModel folds a model's LoRA pairs into a copy of its base weights.
func MergeModel(m *model.Model) (*model.Model, error) {
	mods := m.LoRAModules()
	if len(mods) == 0 {
		return m.Base(), nil
	}
	out, err := model.New(m.Config, m.DType)
	if err != nil {
		return nil, err
	}
	for _, p := range m.Base().Params {
		if err := out.Param(p.Name).SetFloat64s(p.Float64s()); err != nil {
			return nil, err
		}
	}
	for _, mod := range mods {
		w, a, b := out.Param(mod+".weight"), m.Param(mod+model.LoRASuffixA), m.Param(mod+model.LoRASuffixB)
		wv := w.Float64s()
		if err := model.MergeLoRA(wv, b.Float64s(), a.Float64s(), w.Shape[0], w.Shape[1], a.Shape[0], m.LoRAScale(mod)); err != nil {
			return nil, err
		}
		if err := w.SetFloat64s(wv); err != nil {
			return nil, err
		}
	}
	return out, nil
}
