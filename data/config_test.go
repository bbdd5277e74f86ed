package data

import (
	"errors"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"minimal", Config{Train: "data/train"}, false},
		{"full", Config{Train: "t", Val: "v.npy", Format: "npy", Tokenizer: "world:v.txt", Sampling: "magic_prime"}, false},
		{"sequential", Config{Train: "t", Format: "binidx", Tokenizer: "byte", Sampling: "sequential"}, false},
		{"no train", Config{}, true},
		{"bad format", Config{Train: "t", Format: "parquet"}, true},
		{"bad tokenizer", Config{Train: "t", Tokenizer: "gpt2"}, true},
		{"tokenizer without file", Config{Train: "t", Tokenizer: "neox:"}, true},
		{"bad sampling", Config{Train: "t", Sampling: "shuffle"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrBadConfig) {
				t.Errorf("Validate() = %v, want ErrBadConfig", err)
			}
		})
	}
}
