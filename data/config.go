package data

import (
	"errors"
	"fmt"
)

// Config is the data section of a training config.
type Config struct {
	Train     string `mapstructure:"train" yaml:"train" json:"train"`             // corpus to train on (binidx prefix or .npy)
	Val       string `mapstructure:"val" yaml:"val" json:"val"`                   // validation corpus, optional
	Format    string `mapstructure:"format" yaml:"format" json:"format"`          // "binidx", "npy", or "" to infer from the path
	Tokenizer string `mapstructure:"tokenizer" yaml:"tokenizer" json:"tokenizer"` // "byte", "world", "neox", "world:FILE", "neox:FILE", or "" if none
	Sampling  string `mapstructure:"sampling" yaml:"sampling" json:"sampling"`    // "random" (also ""), "magic_prime" or "sequential"
	// Mask is the loss mask of instruction data: "" uses PREFIX.mask when one
	// sits next to a binidx train corpus, "none" trains on every token, a
	// path names the mask file.
	Mask string `mapstructure:"mask" yaml:"mask" json:"mask"`
	// Dataload lays out masked (instruction) data: "pad" (also "") one
	// sample per row, "packed" windows over the concatenated samples.
	Dataload string `mapstructure:"dataload" yaml:"dataload" json:"dataload"`
}

// Validate checks the config without touching the files.
func (c Config) Validate() error {
	var errs []error
	if c.Train == "" {
		errs = append(errs, fmt.Errorf("data: train: %w: path required", ErrBadConfig))
	}
	switch c.Format {
	case "", "binidx", "npy":
	default:
		errs = append(errs, fmt.Errorf("data: format %q: %w: want binidx, npy or empty", c.Format, ErrBadConfig))
	}
	if c.Tokenizer != "" {
		if _, _, err := splitTokenizerSpec(c.Tokenizer); err != nil {
			errs = append(errs, err)
		}
	}
	switch c.Sampling {
	case "", SamplingRandom, SamplingMagicPrime, SamplingSequential:
	default:
		errs = append(errs, fmt.Errorf("data: sampling %q: %w: want random, magic_prime or sequential", c.Sampling, ErrBadConfig))
	}
	switch c.Dataload {
	case "", DataloadPad, DataloadPacked:
	default:
		errs = append(errs, fmt.Errorf("data: dataload %q: %w: want pad, packed or empty", c.Dataload, ErrBadConfig))
	}
	if c.Dataload == DataloadPad && c.Sampling == SamplingMagicPrime {
		errs = append(errs, fmt.Errorf("data: dataload pad with sampling magic_prime: %w: padded rows take random or sequential", ErrBadConfig))
	}
	if c.Mask == MaskNone && c.Dataload != "" {
		errs = append(errs, fmt.Errorf("data: dataload %q with mask none: %w: dataload lays out masked instruction data", c.Dataload, ErrBadConfig))
	}
	return errors.Join(errs...)
}
