package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/go-viper/mapstructure/v2"
	"go.yaml.in/yaml/v3"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/optim"
	"github.com/rwkv-go/rwkv-go/train"
)

// validBase is the least a file needs to validate: a corpus and a length. It ends inside the
// train section, so a test can add "  key: value" lines to that section.
const validBase = "data:\n  train: out/x/train\ntrain:\n  max_steps: 10\n"

// writeConfig writes text to a fresh file and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfigRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		yaml      string // written after validBase unless noBase
		noBase    bool
		overrides []string
		env       []string
		kind      error    // errors.Is target; nil: any error
		want      []string // substrings; {file} is the config's path
	}{
		// Unknown keys, in each source.
		{name: "unknown key", yaml: "checkpoint:\n  evry: 3\n", kind: errUnknownKey,
			want: []string{`config {file}: unknown key "checkpoint.evry" (did you mean "checkpoint.every"?)`}},
		{name: "unknown key with a typo", noBase: true, yaml: "data: {train: a}\ntrain:\n  max_steps: 3\n  micro_bz: 3\n", kind: errUnknownKey,
			want: []string{`config {file}: unknown key "train.micro_bz"`, `"train.micro_bsz"`}},
		{name: "key in the wrong section", yaml: "model:\n  lr_init: 0.1\n", kind: errUnknownKey,
			want: []string{`unknown key "model.lr_init" (did you mean "optim.lr_init"?)`}},
		{name: "unknown section", yaml: "trainer:\n  seed: 3\n", kind: errUnknownKey,
			want: []string{`config {file}: unknown key "trainer"`}},
		{name: "unknown top-level key", yaml: "outdir: x\n", kind: errUnknownKey,
			want: []string{`unknown key "outdir" (did you mean "out_dir"?)`}},
		{name: "keys are case-sensitive", yaml: "Model:\n  n_layer: 2\n", kind: errUnknownKey,
			want: []string{`unknown key "Model"`}},
		{name: "unknown flag", overrides: []string{"--train.micro_bsz_typo=3"}, kind: errUnknownKey,
			want: []string{`flag --train.micro_bsz_typo: unknown key "train.micro_bsz_typo" (did you mean "train.micro_bsz"?)`}},
		{name: "flag names a section", overrides: []string{"--train=3"}, kind: errUnknownKey,
			want: []string{`flag --train: "train" is a section`}},
		{name: "unknown env var", env: []string{"RWKV_TRAIN_FOO=1"}, kind: errUnknownKey,
			want: []string{`environment RWKV_TRAIN_FOO: unknown key "train.foo"`}},
		{name: "env var names a section", env: []string{"RWKV_OPTIM=1"}, kind: errUnknownKey,
			want: []string{`environment RWKV_OPTIM: "optim" is a section`}},

		// Shapes and types from the file.
		{name: "section given a value", yaml: "checkpoint: 3\n", kind: errBadValue,
			want: []string{`config {file}: checkpoint: want a section (a mapping of keys), got 3`}},
		{name: "key given a mapping", yaml: "model:\n  load: {a: 1}\n", kind: errBadValue,
			want: []string{`config {file}: model.load: want a string (quote it), got a mapping`}},
		{name: "key given a list", yaml: "checkpoint:\n  keep: [1, 2]\n", kind: errBadValue,
			want: []string{`config {file}: checkpoint.keep: want an integer, got a list`}},
		{name: "key without a value", yaml: "checkpoint:\n  keep:\n", kind: errBadValue,
			want: []string{`config {file}: checkpoint.keep: want an integer, got no value`}},
		{name: "string key without a value", yaml: "out_dir:\n", kind: errBadValue,
			want: []string{`config {file}: out_dir: want a string, got no value`}},
		{name: "quoted number", yaml: "model:\n  n_layer: \"4\"\n", kind: errBadValue,
			want: []string{`config {file}: model.n_layer: want an integer, got the string "4"`}},
		{name: "word for a number", yaml: "optim:\n  lr_init: fast\n", kind: errBadValue,
			want: []string{`config {file}: optim.lr_init: want a number, got the string "fast"`}},
		{name: "non-integral integer", yaml: "model:\n  n_embd: 2.5\n", kind: errBadValue,
			want: []string{`config {file}: model.n_embd: want an integer, got 2.5`}},
		{name: "integer out of range", yaml: "checkpoint:\n  every: 1e30\n", kind: errBadValue,
			want: []string{`config {file}: checkpoint.every: 1e+30 is out of range`}},
		{name: "negative unsigned", yaml: "  seed: -1\n", kind: errBadValue,
			want: []string{`config {file}: train.seed: want a non-negative integer, got -1`}},
		{name: "maybe for a bool", yaml: "optim:\n  layerwise_lr: maybe\n", kind: errBadValue,
			want: []string{`config {file}: optim.layerwise_lr: want true or false, got the string "maybe"`}},
		{name: "yes is not a bool in YAML 1.2", yaml: "optim:\n  layerwise_lr: yes\n", kind: errBadValue,
			want: []string{`optim.layerwise_lr: want true or false`}},
		{name: "number for a string", yaml: "out_dir: 2024\n", kind: errBadValue,
			want: []string{`config {file}: out_dir: want a string (quote it), got 2024`}},
		{name: "bool for a number", yaml: "model:\n  ctx_len: true\n", kind: errBadValue,
			want: []string{`model.ctx_len: want an integer, got true`}},
		{name: "every problem is reported", yaml: "model:\n  n_embd: 2.5\n  n_layr: 2\n", kind: errBadValue,
			want: []string{`model.n_embd: want an integer`, `unknown key "model.n_layr"`}},

		// Types from the environment and the command line.
		{name: "env word for a number", env: []string{"RWKV_TRAIN_MICRO_BSZ=abc"}, kind: errBadValue,
			want: []string{`environment RWKV_TRAIN_MICRO_BSZ (train.micro_bsz): want an integer, got "abc"`}},
		{name: "env non-integral", env: []string{"RWKV_TRAIN_MICRO_BSZ=2.5"}, kind: errBadValue,
			want: []string{`environment RWKV_TRAIN_MICRO_BSZ (train.micro_bsz): want an integer, got "2.5"`}},
		{name: "env negative unsigned", env: []string{"RWKV_TRAIN_SEED=-1"}, kind: errBadValue,
			want: []string{`environment RWKV_TRAIN_SEED (train.seed): want a non-negative integer, got "-1"`}},
		{name: "env maybe for a bool", env: []string{"RWKV_TRAIN_L2WRAP=maybe"}, kind: errBadValue,
			want: []string{`environment RWKV_TRAIN_L2WRAP (train.l2wrap): want true or false, got "maybe"`}},
		{name: "env empty number", env: []string{"RWKV_OPTIM_LR_INIT="}, kind: errBadValue,
			want: []string{`environment RWKV_OPTIM_LR_INIT (optim.lr_init): want a number, got ""`}},
		{name: "flag word for a number", overrides: []string{"--train.micro_bsz", "x"}, kind: errBadValue,
			want: []string{`flag --train.micro_bsz: want an integer, got "x"`}},
		{name: "flag non-integral", overrides: []string{"--train.micro_bsz=2.5"}, kind: errBadValue,
			want: []string{`flag --train.micro_bsz: want an integer, got "2.5"`}},
		{name: "flag negative unsigned", overrides: []string{"--train.seed=-3"}, kind: errBadValue,
			want: []string{`flag --train.seed: want a non-negative integer, got "-3"`}},
		{name: "flag maybe for a bool", overrides: []string{"--train.l2wrap=maybe"}, kind: errBadValue,
			want: []string{`flag --train.l2wrap: want true or false, got "maybe"`}},
		{name: "flag integer overflow", overrides: []string{"--train.max_tokens=99999999999999999999"}, kind: errBadValue,
			want: []string{`flag --train.max_tokens: "99999999999999999999" is out of range`}},

		// Malformed overrides.
		{name: "override without dashes", overrides: []string{"train.micro_bsz=3"}, kind: errBadFlag,
			want: []string{`flag "train.micro_bsz=3": malformed override`}},
		{name: "override without a value", overrides: []string{"--train.micro_bsz"}, kind: errBadFlag,
			want: []string{`flag "--train.micro_bsz": malformed override: missing value`}},
		{name: "override followed by a flag", overrides: []string{"--train.micro_bsz", "--train.seed=1"}, kind: errBadFlag,
			want: []string{`missing value`}},
		{name: "override without a key", overrides: []string{"--=3"}, kind: errBadFlag},
		{name: "single dash", overrides: []string{"-train.seed=3"}, kind: errBadFlag},
		{name: "bare double dash", overrides: []string{"--"}, kind: errBadFlag},

		// YAML that is not a config.
		{name: "not YAML", yaml: "model: [\n", want: []string{"config {file}: yaml:"}},
		{name: "top level is a list", noBase: true, yaml: "- 1\n- 2\n", want: []string{"config {file}: "}},
		{name: "duplicate key", yaml: "out_dir: a\nout_dir: b\n", want: []string{"config {file}: ", "already defined"}},
		{name: "two documents", yaml: "---\nout_dir: b\n", want: []string{"config {file}: more than one YAML document"}},

		// Impossible values: Validate, wrapped with the file name.
		{name: "zero batch", yaml: "checkpoint: {keep: 1}\n", overrides: []string{"--train.micro_bsz=0"}, kind: train.ErrConfig,
			want: []string{"config {file}: ", "train.micro_bsz = 0: must be positive"}},
		{name: "bad model width", yaml: "model:\n  n_embd: 100\n", kind: model.ErrConfig,
			want: []string{"config {file}: ", "model.n_embd = 100: must be a multiple of 32"}},
		{name: "x070 head size", yaml: "model:\n  arch: x070\n  head_size: 48\n", kind: model.ErrConfig,
			want: []string{"config {file}: ", "model.head_size = 48: must divide n_embd = 512 into heads"}},
		{name: "x070 key on x040", yaml: "model:\n  d_decay_lora: 8\n", kind: model.ErrConfig,
			want: []string{"config {file}: ", "model.d_decay_lora = 8: only RWKV-6 and RWKV-7 (model.arch: x060, x070) have it"}},
		{name: "unknown arch from a flag", yaml: "checkpoint: {keep: 1}\n", overrides: []string{"--model.arch=v4"}, kind: model.ErrConfig,
			want: []string{"config {file}: ", `model.arch = "v4": unknown architecture; use x040`}},
		{name: "arch not a string", yaml: "model:\n  arch: 4\n", kind: errBadValue,
			want: []string{"model.arch: want a string (quote it), got 4"}},
		{name: "beta1 of 1 from env", env: []string{"RWKV_OPTIM_BETA1=1"}, kind: train.ErrConfig,
			want: []string{"config {file}: ", "optim.beta1 must be in [0, 1)"}},
		{name: "NaN learning rate", yaml: "optim:\n  lr_init: .nan\n", kind: train.ErrConfig,
			want: []string{"config {file}: ", "optim.lr_init must be finite"}},
		{name: "no data", noBase: true, yaml: "train:\n  max_steps: 3\n", kind: train.ErrConfig,
			want: []string{"config {file}: ", "data: train"}},
		{name: "both lengths", yaml: "checkpoint: {}\n", env: []string{"RWKV_TRAIN_MAX_TOKENS=1000"}, kind: train.ErrConfig,
			want: []string{"set only one of them"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			text := tt.yaml
			if !tt.noBase {
				text = validBase + text
			}
			path := writeConfig(t, text)
			cfg, err := loadConfig(path, tt.overrides, tt.env)
			if err == nil {
				t.Fatalf("loadConfig succeeded: %+v", cfg)
			}
			if tt.kind != nil && !errors.Is(err, tt.kind) {
				t.Errorf("error %q does not wrap %q", err, tt.kind)
			}
			for _, w := range tt.want {
				w = strings.ReplaceAll(w, "{file}", path)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "none.yaml")
	_, err := loadConfig(path, nil, nil)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("got %v, want a not-exist error naming %s", err, path)
	}
}

func TestLoadConfigAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		yaml      string // after validBase, so "  key: value" lines are in the train section
		overrides []string
		env       []string
		check     func(c train.Config) bool
	}{
		{"integral float for an int", "model:\n  ctx_len: 1e3\n", nil, nil,
			func(c train.Config) bool { return c.Model.CtxLen == 1000 }},
		{"integral float for an int from env", "", nil, []string{"RWKV_TRAIN_MAX_STEPS=2e3"},
			func(c train.Config) bool { return c.Train.MaxSteps == 2000 }},
		{"largest seed", "  seed: 18446744073709551615\n", nil, nil,
			func(c train.Config) bool { return c.Train.Seed == 1<<64-1 }},
		{"largest seed from a flag", "", []string{"--train.seed=18446744073709551615"}, nil,
			func(c train.Config) bool { return c.Train.Seed == 1<<64-1 }},
		{"integer for a float", "optim:\n  grad_clip: 2\n", nil, nil,
			func(c train.Config) bool { return c.Optim.GradClip == 2 }},
		{"squashed keys from env and flags", "", []string{"--optim.lr_init", "8e-4", "--model.n_layer=3"},
			[]string{"RWKV_OPTIM_BETA2=0.999", "RWKV_OPTIM_SCHEDULE=cosine"},
			func(c train.Config) bool {
				return c.Optim.LRInit == 8e-4 && c.Optim.Beta2 == 0.999 && c.Optim.Kind == "cosine" && c.Model.Layers == 3
			}},
		{"bools from text", "", []string{"--train.l2wrap=false"}, []string{"RWKV_OPTIM_LAYERWISE_LR=0"},
			func(c train.Config) bool { return !c.Train.L2Wrap && !c.Optim.LayerwiseLR }},
		{"strings keep their text", "", []string{"--data.val", "-"}, []string{"RWKV_OUT_DIR=1e3"},
			func(c train.Config) bool { return c.Data.Val == "-" && c.OutDir == "1e3" }},
		{"runtime and foreign RWKV_ variables are ignored", "", nil,
			[]string{"RWKV_BLAS=gonum", "RWKV_BLAS_THREADS=2", "RWKV_JIT_ON=1", "RWKV_FLOAT_MODE=bf16", "PATH=/bin", "NOEQUALS"},
			func(c train.Config) bool { return c == baseConfig() }},
		{"an empty section is allowed", "checkpoint:\n  # every: 3\n", nil, nil,
			func(c train.Config) bool { return c == baseConfig() }},
		{"unset keys keep their defaults", "  micro_bsz: 3\n", nil, nil,
			func(c train.Config) bool {
				want := baseConfig()
				want.Train.MicroBsz = 3
				return c == want
			}},
		{"the last repeated flag wins", "", []string{"--train.micro_bsz=2", "--train.micro_bsz=5"}, nil,
			func(c train.Config) bool { return c.Train.MicroBsz == 5 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeConfig(t, validBase+tt.yaml)
			c, err := loadConfig(path, tt.overrides, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("got %+v", c)
			}
		})
	}
}

// TestStrictHook decodes with the hook alone, as UnmarshalExact does, without the per-source
// checks in front of it.
func TestStrictHook(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      map[string]any
		want    train.LoopConfig // checked when ok
		wantErr bool
	}{
		{"string to int", map[string]any{"micro_bsz": "4"}, train.LoopConfig{MicroBsz: 4}, false},
		{"integral float to int", map[string]any{"max_tokens": 1e3}, train.LoopConfig{MaxTokens: 1000}, false},
		{"string float to int", map[string]any{"max_steps": "2e2"}, train.LoopConfig{MaxSteps: 200}, false},
		{"string to uint64", map[string]any{"seed": "18446744073709551615"}, train.LoopConfig{Seed: 1<<64 - 1}, false},
		{"string to bool", map[string]any{"l2wrap": "true"}, train.LoopConfig{L2Wrap: true}, false},
		{"non-integral float", map[string]any{"micro_bsz": 2.5}, train.LoopConfig{}, true},
		{"non-integral string", map[string]any{"micro_bsz": "2.5"}, train.LoopConfig{}, true},
		{"word", map[string]any{"micro_bsz": "four"}, train.LoopConfig{}, true},
		{"negative unsigned", map[string]any{"seed": -1}, train.LoopConfig{}, true},
		{"maybe", map[string]any{"l2wrap": "maybe"}, train.LoopConfig{}, true},
		{"int to bool", map[string]any{"l2wrap": 1}, train.LoopConfig{}, true},
		{"int to string", map[string]any{"bptt": 1}, train.LoopConfig{}, true},
		{"NaN to int", map[string]any{"micro_bsz": math.NaN()}, train.LoopConfig{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got train.LoopConfig
			dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
				DecodeHook: strictHook(), ErrorUnused: true, Result: &got})
			if err != nil {
				t.Fatal(err)
			}
			err = dec.Decode(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// baseConfig is what validBase resolves to.
func baseConfig() train.Config {
	c := train.DefaultConfig()
	c.Data.Train = "out/x/train"
	c.Train.MaxSteps = 10
	return c
}

func TestLoadConfigPrecedence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		file, env, flag bool
		want            int
	}{
		{"default", false, false, false, 8},
		{"file over default", true, false, false, 2},
		{"env over file", true, true, false, 3},
		{"env over default", false, true, false, 3},
		{"flag over env", true, true, true, 4},
		{"flag over file", true, false, true, 4},
	}
	if d := train.DefaultConfig().Train.MicroBsz; d != 8 {
		t.Fatalf("default micro_bsz is %d; update this test", d)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			text, env, flags := validBase, []string{"RWKV_DATA_VAL=v"}, []string{"--out_dir", "o"}
			if tt.file {
				text += "  micro_bsz: 2\n"
			}
			if tt.env {
				env = append(env, "RWKV_TRAIN_MICRO_BSZ=3")
			}
			if tt.flag {
				flags = append(flags, "--train.micro_bsz", "4")
			}
			c, err := loadConfig(writeConfig(t, text), flags, env)
			if err != nil {
				t.Fatal(err)
			}
			if c.Train.MicroBsz != tt.want || c.Data.Val != "v" || c.OutDir != "o" {
				t.Errorf("micro_bsz %d, data.val %q, out_dir %q; want %d, v, o", c.Train.MicroBsz, c.Data.Val, c.OutDir, tt.want)
			}
		})
	}
	t.Run("no file", func(t *testing.T) {
		t.Parallel()
		c, err := loadConfig("", []string{"--data.train=t"}, []string{"RWKV_TRAIN_MAX_STEPS=7"})
		if err != nil {
			t.Fatal(err)
		}
		want := train.DefaultConfig()
		want.Data.Train, want.Train.MaxSteps = "t", 7
		if c != want {
			t.Errorf("got %+v, want %+v", c, want)
		}
	})
}

// fullConfig sets every key to a valid value other than its default.
func fullConfig() train.Config {
	c := train.DefaultConfig()
	c.Model.Layers, c.Model.Embd, c.Model.Vocab, c.Model.CtxLen, c.Model.FFN = 3, 96, 300, 48, 200
	c.Model.Load = "weights: a.pth" // needs quoting
	c.Model.Arch, c.Model.HeadSize, c.Model.NoV0Layer0 = "x070", 32, true
	c.Model.DimDecay, c.Model.DimAAA, c.Model.DimMV, c.Model.DimGate = 8, 12, 4, 16
	c.Data.Train, c.Data.Val, c.Data.Format = "true", "null", "npy"
	c.Data.Tokenizer, c.Data.Sampling = "world:vocab #1.txt", "sequential"
	c.Data.Mask, c.Data.Dataload = "masks/a b.mask", "packed"
	c.Optim.Kind, c.Optim.LRInit, c.Optim.LRFinal = "cosine", 3e-4, 1.0000000000000002e-6
	c.Optim.WarmupSteps, c.Optim.TotalSteps = 5, 123
	c.Optim.Beta1, c.Optim.Beta2, c.Optim.Eps, c.Optim.WeightDecay = 0.8, 0.999, 1e-10, 0.1
	c.Optim.GradClip, c.Optim.LayerwiseLR = 0.5, false
	c.Train = train.LoopConfig{MicroBsz: 3, GradAccum: 2, MaxTokens: 1 << 40, Seed: 1<<64 - 1,
		EvalEvery: 7, EvalTokens: 4096, LogEvery: 2, L2Wrap: false, MaxBadSteps: 9,
		ChunkLen: 16, BPTT: train.BPTTTruncated}
	c.Checkpoint = train.CheckpointConfig{Dir: "ck pts", Every: 11, Keep: 0}
	c.PEFT = train.PEFTConfig{Mode: "lora", LoRAR: 8, LoRAAlpha: 16, LoRADropout: 0.05, Targets: "att.key, ffn.value",
		TrainParts: "ln", SVDNiter: 2, Load: "adapter: #1.pth"}
	c.OutDir = "0x10"
	return c
}

// fullConfig6 is fullConfig as an x060 model, which has the x060-only keys and not x070's.
func fullConfig6() train.Config {
	c := fullConfig()
	c.Model.Arch, c.Model.DimMix = "x060", 6
	c.Model.DimAAA, c.Model.DimMV, c.Model.DimGate, c.Model.NoV0Layer0 = 0, 0, 0, false
	return c
}

func TestMarshalConfigRoundTrip(t *testing.T) {
	t.Parallel()
	full, full6, def := reflect.ValueOf(fullConfig()), reflect.ValueOf(fullConfig6()), reflect.ValueOf(train.DefaultConfig())
	for _, f := range configFields() {
		if f.key == "train.max_steps" { // excludes max_tokens; baseConfig sets it
			continue
		}
		if full.FieldByIndex(f.index).Equal(def.FieldByIndex(f.index)) && full6.FieldByIndex(f.index).Equal(def.FieldByIndex(f.index)) {
			t.Errorf("fullConfig and fullConfig6 leave %s at its default; set it so the round trip covers it", f.key)
		}
	}
	for _, c := range []train.Config{fullConfig(), fullConfig6(), baseConfig()} {
		text, err := marshalConfig(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := loadConfig(writeConfig(t, text), nil, nil)
		if err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("round trip\n got %+v\nwant %+v\nYAML:\n%s", got, c, text)
		}
		for _, f := range configFields() {
			_, leaf, _ := strings.Cut(f.key, ".")
			if leaf == "" {
				leaf = f.key
			}
			if !strings.Contains(text, leaf+":") {
				t.Errorf("key %s missing from\n%s", f.key, text)
			}
		}
	}
}

func TestConfigFields(t *testing.T) {
	t.Parallel()
	fields, sections := configSchema()
	if len(fields) != len(configFields()) {
		t.Errorf("duplicate keys in %v", configFields())
	}
	for _, key := range []string{"model.n_layer", "model.load", "optim.lr_init", "optim.grad_clip", "data.sampling", "train.seed", "checkpoint.keep", "out_dir"} {
		if _, ok := fields[key]; !ok {
			t.Errorf("no key %s", key)
		}
	}
	for key, typ := range fields {
		if !isLeaf(typ) {
			t.Errorf("%s has type %s, which config values cannot hold", key, typ)
		}
		// RWKV_<SECTION>_<KEY> is only unambiguous with one-word sections, and top-level keys that
		// do not start with a section's name.
		if sec, _, ok := strings.Cut(key, "."); ok && strings.Contains(sec, "_") {
			t.Errorf("section %q has an underscore", sec)
		}
		if first, _, _ := strings.Cut(key, "_"); !strings.Contains(key, ".") && sections[first] {
			t.Errorf("top-level key %q starts with a section name", key)
		}
	}
}

// TestConfigsLoad checks that every recipe in configs/ resolves and validates (the data files
// need not exist) and that configs/README.md documents every key with its default.
func TestConfigsLoad(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../../configs/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tiny.yaml", "enwik8-L6-D512.yaml", "rwkv4-169m.yaml", "finetune.yaml",
		"x070-pretrain-tiny.yaml", "x070-finetune-0.1b.yaml"} {
		if _, err := os.Stat(filepath.Join("../../configs", want)); err != nil {
			t.Error(err)
		}
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			c, err := loadConfig(path, nil, nil)
			if errors.Is(err, train.ErrMemory) { // valid, for a larger machine than this one
				t.Logf("valid, but more than this machine can hold: %v", err)
			} else if err != nil {
				t.Fatal(err)
			}
			// Every recipe spells out every key, so a user can see and edit all of them.
			text, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range configFields() {
				_, leaf, _ := strings.Cut(f.key, ".")
				if leaf == "" {
					leaf = f.key
				}
				if !strings.Contains(string(text), "\n  "+leaf+":") && !strings.Contains(string(text), "\n"+leaf+":") {
					t.Errorf("does not set %s", f.key)
				}
			}
			if out, err := marshalConfig(c); err != nil || out == "" {
				t.Errorf("marshalConfig: %v", err)
			}
		})
	}
	readme, err := os.ReadFile("../../configs/README.md")
	if err != nil {
		t.Fatal(err)
	}
	def := reflect.ValueOf(train.DefaultConfig())
	for _, f := range configFields() {
		b, err := yaml.Marshal(def.FieldByIndex(f.index).Interface())
		if err != nil {
			t.Fatal(err)
		}
		row := fmt.Sprintf("| `%s` | `%s` |", f.key, strings.TrimSpace(string(b)))
		if !strings.Contains(string(readme), row) {
			t.Errorf("configs/README.md has no row starting %s", row)
		}
	}
}

// TestX070Recipes: the RWKV-7 recipes are RWKV-LM's v7 recipe (cosine_v7, eps 1e-18, w0 at 2x
// lr), and the 0.1B fine-tune describes the released RWKV7 0.1B World model: 191M parameters
// (NEXT-ARCH §3: "0.1B (≈191M) 12×768"), World vocabulary, with a memory estimate of a few GiB.
func TestX070Recipes(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"x070-pretrain-tiny.yaml", "x070-finetune-0.1b.yaml"} {
		c, err := loadConfig(filepath.Join("../../configs", name), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Model.Arch != arch.X070 || c.Optim.Kind != optim.CosineV7 || c.Optim.Eps != 1e-18 || !c.Optim.LayerwiseLR {
			t.Errorf("%s: arch %q, schedule %q, eps %v, layerwise_lr %v: not RWKV-LM's v7 recipe", name, c.Model.Arch, c.Optim.Kind, c.Optim.Eps, c.Optim.LayerwiseLR)
		}
		m := c.EstimateMemory()
		t.Logf("%s: %d parameters; estimate: params %.2f GiB, activations %.2f GiB, logits %.2f GiB", name,
			c.Model.Dims().NumParams(), m.Params/(1<<30), m.Activations/(1<<30), m.Logits/(1<<30))
		if name != "x070-finetune-0.1b.yaml" {
			continue
		}
		if n := c.Model.Dims().NumParams(); n < 190e6 || n > 192e6 || c.Model.Vocab != 65536 || c.Data.Tokenizer != "world" {
			t.Errorf("%s: %d parameters, vocab %d, tokenizer %q: not the released 0.1B World model", name, n, c.Model.Vocab, c.Data.Tokenizer)
		}
		if tot := m.Total() / (1 << 30); tot < 4 || tot > 16 {
			t.Errorf("%s: memory estimate %.2f GiB, want a few GiB", name, tot)
		}
	}
}

// FuzzConfigYAML checks that no file makes loadConfig panic, and that whatever it accepts
// survives marshalConfig and loads again to the same config.
func FuzzConfigYAML(f *testing.F) {
	f.Add([]byte(validBase))
	f.Add([]byte("model: {n_layer: 1e3, n_embd: 2.5}\ntrain: [1]\n"))
	f.Add([]byte("a: &x {b: 1}\nmodel:\n  <<: *x\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := resolveConfig("fuzz.yaml", src, nil, nil)
		if err != nil {
			return
		}
		text, err := marshalConfig(c)
		if err != nil {
			t.Fatal(err)
		}
		again, err := resolveConfig("marshalled.yaml", []byte(text), nil, nil)
		if err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		if !reflect.DeepEqual(again, c) {
			t.Errorf("round trip\n got %+v\nwant %+v", again, c)
		}
	})
}
