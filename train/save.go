package train

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/optim"
)

// Save writes a resumable checkpoint of the current step into the checkpoint directory and
// prunes old ones down to checkpoint.keep. It returns the file's path.
func (t *Trainer) Save() (string, error) {
	dir := t.cfg.CheckpointDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
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
	path, err := checkpoint.Save(dir, int64(t.step), Tensors(t.Model, checkpoint.F32), ms, vs, checkpoint.State{
		Step: int64(t.step), OptimStep: st.Step, Tokens: t.tokens, Config: t.opts.ConfigYAML, Sampler: sampler,
		Extra: map[string]string{"bad_steps_total": fmt.Sprint(t.badTotal), "bad_steps_in_row": fmt.Sprint(t.badInRow)},
	})
	if err != nil {
		return "", err
	}
	t.log.Info("checkpoint", "path", path, "step", t.step)
	if t.cfg.Checkpoint.Keep > 0 {
		if err := checkpoint.Prune(dir, t.cfg.Checkpoint.Keep); err != nil {
			return path, err
		}
	}
	return path, nil
}

// resume restores weights, optimiser state, step, token count and the sampler from a
// checkpoint file, or from the newest one in a directory.
func (t *Trainer) resume(from string) error {
	path := from
	if fi, err := os.Stat(from); err == nil && fi.IsDir() {
		if path, err = checkpoint.Latest(from); err != nil {
			return fmt.Errorf("resume: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	ck, err := checkpoint.Load(path)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	if err := SetTensors(t.Model, ck.Weights); err != nil {
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
	t.log.Info("resumed", "path", path, "step", t.step, "tokens", t.tokens)
	return nil
}

var errBadCheckpoint = errors.New("checkpoint does not fit this run")

// ExportPath is where Run's caller writes the exported model by default.
func (t *Trainer) ExportPath() string { return filepath.Join(t.cfg.OutDir, "model.safetensors") }
