package train

import (
	"fmt"
	"slices"
	"strings"

	"github.com/rwkv-go/rwkv-go/model"
)

// checkLoadedShape compares the model read from model.load (got) with the config's model
// section (want). A mismatch is a config error (ErrConfig) naming the first tensor, in
// state-dict order, whose shape differs or that only one side has.
func checkLoadedShape(path string, got, want model.Config) error {
	if got.Dims() == want.Dims() {
		return nil
	}
	if a, b := got.Dims().Arch, want.Dims().Arch; a != b {
		return fmt.Errorf("%w: model.load %q holds an %s model, model.arch is %q; fix model.arch or the file", ErrConfig, path, a.Title(), b)
	}
	have := map[string][]int{}
	for _, s := range model.Specs(got) {
		have[s.Name] = s.Shape
	}
	what := ""
	for _, s := range model.Specs(want) {
		shape, ok := have[s.Name]
		switch {
		case !ok:
			what = fmt.Sprintf("has no tensor %q", s.Name)
		case !slices.Equal(shape, s.Shape):
			what = fmt.Sprintf("has tensor %q of shape %v where the config needs %v", s.Name, shape, s.Shape)
		default:
			continue
		}
		break
	}
	if what == "" { // the config's tensors are a subset of the file's: name the first extra one
		need := map[string]bool{}
		for _, s := range model.Specs(want) {
			need[s.Name] = true
		}
		for _, s := range model.Specs(got) {
			if !need[s.Name] {
				what = fmt.Sprintf("has tensor %q, which the config has no place for", s.Name)
				break
			}
		}
	}
	if got.Dims().V0Layer0 != want.Dims().V0Layer0 && strings.Contains(what, `"blocks.0.att.v`) {
		what += fmt.Sprintf(" (layer 0's unused v0/v1/v2: set model.no_v0_layer0: %v)", !got.Dims().V0Layer0)
	}
	return fmt.Errorf("%w: model.load %q %s: it holds a %v model, the model section says %v; fix model.* or the file",
		ErrConfig, path, what, got, want)
}
