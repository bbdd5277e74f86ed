package weights

import (
	"fmt"

	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/model"
)

// AdapterOptions say how to apply adapter files to a loaded base model.
type AdapterOptions struct {
	// Init is PiSSA's init file (init_lora_A/B), needed to merge a PiSSA adapter.
	Init string
	// LoRAAlpha is the run's peft.lora_alpha: a LoRA adapter merges as W + (α/r)·B·A.
	LoRAAlpha float64
}

// ApplyAdapter folds an adapter file (LoRA or PiSSA pairs, train_parts) into the base model's
// weights in place, as checkpoint.MergeAdapter does (computed in float64): the model then
// computes what the adapted model did. States are refused: use ApplyState.
func ApplyAdapter(m *model.Model, path string, o AdapterOptions) error {
	paths := []string{path}
	if o.Init != "" {
		paths = append(paths, o.Init)
	}
	a, err := checkpoint.ReadAdapter(model.Specs(m.Config), checkpoint.AdapterRules{TrainParts: []string{""}}, paths...)
	if err != nil {
		return err
	}
	if len(a.States) > 0 {
		return fmt.Errorf("adapter %s holds time_state tensors (state tuning): load it as a state file", path)
	}
	scale := 0.0
	if len(a.LoRA) > 0 && len(a.Init) == 0 {
		if !(o.LoRAAlpha > 0) {
			return fmt.Errorf("adapter %s is a LoRA adapter (r %d): give the run's peft.lora_alpha (merged as W + alpha/r·B·A), or the init file of a PiSSA adapter", path, a.Rank)
		}
		scale = o.LoRAAlpha / float64(a.Rank)
	}
	merged, err := checkpoint.MergeAdapter(Tensors(m, checkpoint.F64), a, scale)
	if err != nil {
		return err
	}
	return Set(m, merged)
}

// ApplyState gives a base model the states of a state file (blocks.N.att.time_state for every
// layer): every sequence then starts from them (model.InitialState).
func ApplyState(m *model.Model, path string) error {
	a, err := checkpoint.ReadAdapter(model.Specs(m.Config), checkpoint.AdapterRules{TrainParts: []string{}}, path)
	if err != nil {
		return err
	}
	if len(a.States) != m.Config.Layers || len(a.LoRA) > 0 {
		return fmt.Errorf("state file %s: %d time_state tensors and %d LoRA pairs; want one state for each of the %d layers and nothing else",
			path, len(a.States), len(a.LoRA), m.Config.Layers)
	}
	m.AddTimeState()
	for _, t := range a.States {
		v, err := t.Float64s()
		if err != nil {
			return fmt.Errorf("state file %s: %w", path, err)
		}
		if err := m.Param(t.Name).SetFloat64s(v); err != nil {
			return fmt.Errorf("state file %s: %w", path, err)
		}
	}
	return nil
}
