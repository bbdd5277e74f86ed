package train

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/optim"
	"github.com/rwkv-go/rwkv-go/weights"
)

// Save writes a resumable checkpoint of the current step into the checkpoint directory and
// prunes old ones down to checkpoint.keep, never removing the last good one (the newest written
// outside a run of non-finite steps). It returns the file's path. On several ranks every rank
// calls it; rank 0 writes, and all return its path or its error.
func (t *Trainer) Save() (string, error) {
	if t.diverged {
		return "", fmt.Errorf("%w: the weights are non-finite, nothing to save; %s", ErrDiverged, t.lastGoodNote())
	}
	var path string
	var err error
	if t.leader() {
		path, err = t.save()
	}
	if t.world.Size() == 1 {
		return path, err
	}
	shared, serr := t.shareOutcome("checkpoint", path, err)
	if t.leader() {
		return path, err
	}
	if serr == nil && t.badInRow == 0 {
		t.lastGood = shared
	}
	return shared, serr
}

// save writes the checkpoint (rank 0).
func (t *Trainer) save() (string, error) {
	dir := t.cfg.CheckpointDir()
	st := t.opt.State()
	var ms, vs []checkpoint.Tensor
	for i, p := range t.params {
		ms = append(ms, checkpoint.FromFloat32(p.Name, p.Shape, st.M[i], checkpoint.F32))
		vs = append(vs, checkpoint.FromFloat32(p.Name, p.Shape, st.V[i], checkpoint.F32))
	}
	sampler, err := t.loader.State()
	if err != nil {
		return "", err
	}
	ws := weights.Tensors(t.Model, checkpoint.F32)
	if t.cfg.PEFT.On() { // the frozen base is model.load's: save what trains
		ws = t.trainedTensors(checkpoint.F32)
	}
	path, err := checkpoint.Save(dir, int64(t.step), ws, ms, vs, checkpoint.State{
		Step: int64(t.step), OptimStep: st.Step, Tokens: t.tokens, Config: t.opts.ConfigYAML, Sampler: sampler,
		Extra: map[string]string{"bad_steps_total": fmt.Sprint(t.badTotal), "bad_steps_in_row": fmt.Sprint(t.badInRow),
			"world_size": fmt.Sprint(t.world.Size()), "global_micro_bsz": fmt.Sprint(t.world.Size() * t.cfg.Train.MicroBsz)},
	})
	if err != nil {
		return "", err
	}
	if t.badInRow == 0 {
		t.lastGood = path
	}
	t.log.Info("checkpoint", "path", path, "step", t.step)
	if a, err := t.WriteAdapter(); err != nil {
		return path, fmt.Errorf("adapter file: %w", err)
	} else if a != "" {
		t.log.Info("adapter", "path", a, "step", t.step)
	}
	if t.cfg.Checkpoint.Keep > 0 {
		if err := checkpoint.Prune(dir, t.cfg.Checkpoint.Keep, t.lastGood); err != nil {
			return path, err
		}
	}
	return path, nil
}

// goodState reports whether a checkpoint was written outside a run of non-finite steps.
func goodState(st checkpoint.State) bool {
	n := st.Extra["bad_steps_in_row"]
	return n == "" || n == "0"
}

// loadResume finds and loads the checkpoint to resume from: a file, or the newest good one in
// a directory (one saved inside a run of non-finite steps is passed over). Where from is the
// run's own checkpoint.dir and holds no checkpoint yet, it returns nil: the run starts fresh,
// so a scheduler may always pass --resume. The model section is taken from the checkpoint. On
// several ranks rank 0 chooses the file and every rank reads it (checkpoint.dir must be on a
// filesystem they share).
func (t *Trainer) loadResume(from string) (*checkpoint.Checkpoint, error) {
	var path string
	var err error
	if t.leader() {
		path, err = t.resolveResume(from)
	}
	if path, err = t.shareOutcome("resume", path, err); err != nil || path == "" {
		return nil, err
	}
	ck, err := checkpoint.Load(path)
	if err != nil {
		if !t.leader() {
			return nil, fmt.Errorf("resume: rank %d cannot read %s, the checkpoint rank 0 chose: %w; every rank must see checkpoint.dir (a shared filesystem)", t.world.Rank(), path, err)
		}
		return nil, fmt.Errorf("resume: %w", err)
	}
	if err := t.adoptModel(ck); err != nil {
		return nil, err
	}
	return ck, nil
}

// resolveResume returns the checkpoint file to resume from, or "" to start fresh.
func (t *Trainer) resolveResume(from string) (string, error) {
	path := from
	fi, err := os.Stat(from)
	if err != nil {
		return "", fmt.Errorf("resume: %w", err)
	}
	if fi.IsDir() {
		var passed []string
		path, passed, err = checkpoint.LatestWhere(from, goodState)
		for _, p := range passed {
			t.log.Warn("resume: passing over a checkpoint saved inside a run of non-finite steps", "path", p)
		}
		if errors.Is(err, checkpoint.ErrNoCheckpoint) && len(passed) > 0 {
			return "", fmt.Errorf("resume: %s holds only checkpoints saved inside a run of non-finite steps (newest %s); to continue from one anyway, name the file", from, passed[0])
		}
		if errors.Is(err, checkpoint.ErrNoCheckpoint) && sameDir(from, t.cfg.CheckpointDir()) {
			t.log.Info("resume: no checkpoint yet, starting fresh", "dir", from)
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("resume: %w", err)
		}
	}
	return path, nil
}

// sameDir reports whether a and b name one directory.
func sameDir(a, b string) bool {
	ia, err1 := dirIdentity(a)
	ib, err2 := dirIdentity(b)
	return err1 == nil && err2 == nil && ia == ib
}

// adoptModel makes the model section the checkpoint's (as configs/README documents), warning
// for each key of the config that says otherwise.
func (t *Trainer) adoptModel(ck *checkpoint.Checkpoint) error {
	if ck.State.Config == "" { // written without a config: the shapes are checked when loading
		return nil
	}
	var stored struct {
		Model model.Config `yaml:"model"`
	}
	if err := yaml.Unmarshal([]byte(ck.State.Config), &stored); err != nil {
		return fmt.Errorf("resume %s: its config: %w", ck.Path, err)
	}
	sm, cm := stored.Model, t.cfg.Model.Config
	if err := sm.Validate(); err != nil {
		return fmt.Errorf("resume %s: its model section: %w", ck.Path, err)
	}
	for _, k := range []struct {
		key           string
		config, saved int
	}{{"n_layer", cm.Layers, sm.Layers}, {"n_embd", cm.Embd, sm.Embd}, {"vocab_size", cm.Vocab, sm.Vocab},
		{"ctx_len", cm.CtxLen, sm.CtxLen}, {"dim_ffn", cm.DimFFN(), sm.DimFFN()}} {
		if k.config != k.saved {
			t.log.Warn(fmt.Sprintf("resume: model.%s = %d in the config but %d in the checkpoint; on resume the model section comes from the checkpoint", k.key, k.config, k.saved),
				"checkpoint", ck.Path)
		}
	}
	if a, b := cm.Arch.Resolve(), sm.Arch.Resolve(); a != b { // "" (checkpoints from before model.arch) is x040
		t.log.Warn(fmt.Sprintf("resume: model.arch = %q in the config but %q in the checkpoint; on resume the model section comes from the checkpoint", a, b),
			"checkpoint", ck.Path)
	} else { // the keys of x052, x060 and x070, with their defaults applied (0 where an arch has none)
		cd, sd := cm.Dims(), sm.Dims()
		cl, sl := cd.LoRA, sd.LoRA
		for _, k := range []struct {
			key           string
			config, saved int
		}{{"head_size", cd.HeadSize, sd.HeadSize}, {"d_decay_lora", cl.W, sl.W}, {"d_aaa_lora", cl.A, sl.A},
			{"d_mv_lora", cl.V, sl.V}, {"d_gate_lora", cl.G, sl.G}, {"d_mix_lora", cl.Mix, sl.Mix}} {
			if k.config != k.saved {
				t.log.Warn(fmt.Sprintf("resume: model.%s = %d in the config but %d in the checkpoint; on resume the model section comes from the checkpoint", k.key, k.config, k.saved),
					"checkpoint", ck.Path)
			}
		}
		if a == arch.X070 && cm.NoV0Layer0 != sm.NoV0Layer0 {
			t.log.Warn(fmt.Sprintf("resume: model.no_v0_layer0 = %v in the config but %v in the checkpoint; on resume the model section comes from the checkpoint", cm.NoV0Layer0, sm.NoV0Layer0),
				"checkpoint", ck.Path)
		}
	}
	t.cfg.Model.Config = sm
	if err := t.cfg.Validate(); err != nil {
		return fmt.Errorf("resume %s: with its model section: %w", ck.Path, err)
	}
	// The config stored in the checkpoints this run writes (and printed by the caller) must
	// describe their weights, or the next resume would adopt the wrong shape.
	y, err := withModelSection(t.opts.ConfigYAML, sm)
	if err != nil {
		return fmt.Errorf("resume %s: %w", ck.Path, err)
	}
	t.opts.ConfigYAML = y
	return nil
}

// withModelSection returns the YAML document text with its model section's shape keys set to
// m's, keeping every other key and the order of keys.
func withModelSection(text string, m model.Config) (string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return "", fmt.Errorf("config: not a YAML mapping")
	}
	root := doc.Content[0]
	var sec *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "model" && root.Content[i+1].Kind == yaml.MappingNode {
			sec = root.Content[i+1]
		}
	}
	if sec == nil {
		sec = &yaml.Node{Kind: yaml.MappingNode}
		root.Content = append([]*yaml.Node{{Kind: yaml.ScalarNode, Value: "model"}, sec}, root.Content...)
	}
	var want yaml.Node
	if err := want.Encode(m); err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
set:
	for i := 0; i+1 < len(want.Content); i += 2 {
		key, val := want.Content[i], want.Content[i+1]
		for j := 0; j+1 < len(sec.Content); j += 2 {
			if sec.Content[j].Value == key.Value {
				sec.Content[j+1] = val
				continue set
			}
		}
		sec.Content = append(sec.Content, key, val)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	return buf.String(), nil
}

// resume restores weights, optimiser state, step, token count and the sampler from a loaded
// checkpoint.
func (t *Trainer) resume(ck *checkpoint.Checkpoint) error {
	path := ck.Path
	set := func() error { return weights.Set(t.Model, ck.Weights) }
	if t.cfg.PEFT.On() {
		set = func() error { return t.setTrained(ck.Weights) }
	}
	if err := set(); err != nil {
		return fmt.Errorf("resume %s: %w", path, err)
	}
	if len(ck.OptimM) != len(t.params) || len(ck.OptimV) != len(t.params) {
		return fmt.Errorf("resume %s: %w: it has optimiser moments for %d of %d tensors", path, errBadCheckpoint, len(ck.OptimM), len(t.params))
	}
	st := optim.AdamWState[float32]{Step: ck.State.OptimStep, M: make([][]float32, len(t.params)), V: make([][]float32, len(t.params))}
	for i, p := range t.params {
		m, err := ck.OptimM[i].Float32s()
		if err != nil {
			return fmt.Errorf("resume %s: %w", path, err)
		}
		v, err := ck.OptimV[i].Float32s()
		if err != nil {
			return fmt.Errorf("resume %s: %w", path, err)
		}
		if ck.OptimM[i].Name != p.Name || len(m) != len(p.Data) || len(v) != len(p.Data) {
			return fmt.Errorf("resume %s: %w: optimiser moment %q does not match parameter %q", path, errBadCheckpoint, ck.OptimM[i].Name, p.Name)
		}
		st.M[i], st.V[i] = m, v
	}
	if err := t.opt.SetState(st); err != nil {
		return fmt.Errorf("resume %s: %w", path, err)
	}
	if err := t.loader.SetState(ck.State.Sampler); err != nil {
		return fmt.Errorf("resume %s: %w", path, err)
	}
	t.step, t.tokens = int(ck.State.Step), ck.State.Tokens
	fmt.Sscan(ck.State.Extra["bad_steps_total"], &t.badTotal)
	fmt.Sscan(ck.State.Extra["bad_steps_in_row"], &t.badInRow)
	if goodState(ck.State) {
		t.lastGood = path
	}
	t.log.Info("resumed", "path", path, "step", t.step, "tokens", t.tokens)
	return nil
}

var errBadCheckpoint = errors.New("checkpoint does not fit this run")

// ExportPath is where Run's caller writes the exported model by default.
func (t *Trainer) ExportPath() string { return filepath.Join(t.cfg.OutDir, "model.safetensors") }
