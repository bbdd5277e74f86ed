package reference

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/checkpoint"
)

// TestGoldenLayout6 requires the parameters of the x052 and x060 golden files, which
// reference/rwkv6.py writes in its param_shapes order (RWKV-LM's registration order), to be
// exactly arch's layout for the sizes in the file's metadata (names, shapes and order), and
// arch.Infer to read those sizes and the architecture back from the tensors.
func TestGoldenLayout6(t *testing.T) {
	for _, f := range []string{"golden5_f64", "golden6_f64", "golden5_f32", "golden6_f32"} {
		t.Run(f, func(t *testing.T) {
			file, err := checkpoint.OpenSafetensors(filepath.Join("..", "model", "testdata", f+".safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			meta := func(k string) int {
				v, err := strconv.Atoi(file.Meta[k])
				if err != nil {
					t.Fatalf("metadata %s: %v", k, err)
				}
				return v
			}
			want := arch.Dims{Arch: arch.Arch(file.Meta["arch"]), Vocab: meta("vocab_size"), Embd: meta("n_embd"),
				FFN: meta("dim_ffn"), Layers: meta("n_layer"), HeadSize: meta("head_size")}
			if want.Arch == arch.X060 {
				want.LoRA = arch.LoRA{Mix: meta("D_mix"), W: meta("D_decay")}
			} else if want.Arch != arch.X052 {
				t.Fatalf("metadata arch %q, want x052 or x060", want.Arch)
			}
			var got []arch.Spec
			for _, x := range file.Tensors {
				if name, ok := strings.CutPrefix(x.Name, "param/"); ok {
					got = append(got, arch.Spec{Name: name, Shape: x.Shape})
				}
			}
			layout := want.Layout()
			if len(got) != len(layout) {
				t.Fatalf("%d parameters, arch's layout has %d", len(got), len(layout))
			}
			for i := range layout {
				if got[i].Name != layout[i].Name || !slices.Equal(got[i].Shape, layout[i].Shape) {
					t.Errorf("parameter %d: %s%v, arch's layout has %s%v", i, got[i].Name, got[i].Shape, layout[i].Name, layout[i].Shape)
				}
			}
			d, err := arch.Infer(got)
			if err != nil {
				t.Fatal(err)
			}
			if d.Arch != want.Arch || d.Vocab != want.Vocab || d.Embd != want.Embd || d.FFN != want.FFN ||
				d.Layers != want.Layers || d.HeadSize != want.HeadSize || d.LoRA != want.LoRA {
				t.Errorf("arch.Infer: %+v, want %+v", d, want)
			}
		})
	}
}
