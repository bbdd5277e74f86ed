package model

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// embedOp: (emb (V,C), ids Int (N)) -> rows of emb (N,C).
type embedOp struct {
	opBase
	N, V, C int
	buf     *outBuf
}

// Embed looks up the rows ids of emb.
func Embed(emb, ids *G.Node) (*G.Node, error) {
	s := emb.Shape()
	return G.ApplyOp(embedOp{N: ids.Shape()[0], V: s[0], C: s[1], buf: newOutBuf()}, emb, ids)
}

func (o embedOp) Arity() int    { return 2 }
func (o embedOp) Type() hm.Type { return hm.NewFnType(matT, idsT, matT) }
func (o embedOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.N, o.C}, nil
}
func (o embedOp) Do(in ...G.Value) (G.Value, error) {
	ids := in[1].Data().([]int)
	for i, id := range ids {
		if id < 0 || id >= o.V {
			return nil, fmt.Errorf("model: token id %d at position %d is outside the vocabulary [0, %d)", id, i, o.V)
		}
	}
	out := o.buf.get(dtypeOf(in[0]), false, o.N, o.C)
	switch d := out.Data().(type) {
	case []float32:
		gatherRows(f32(in[0]), ids, d, o.C)
	case []float64:
		gatherRows(f64(in[0]), ids, d, o.C)
	}
	return out, nil
}

func gatherRows[F Float](emb []F, ids []int, out []F, C int) {
	for i, id := range ids {
		copy(out[i*C:(i+1)*C], emb[id*C:(id+1)*C])
	}
}

func (o embedOp) String() string        { return fmt.Sprintf("Embed{N=%d,V=%d,C=%d}", o.N, o.V, o.C) }
func (o embedOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o embedOp) Hashcode() uint32      { return hashcode(o) }
func (o embedOp) DiffWRT(int) []bool    { return []bool{true, false} }
func (o embedOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	g, err := G.ApplyOp(embedBackOp{fwd: o, buf: newOutBuf()}, in[1], grad)
	return G.Nodes{g, nil}, err
}

// embedBackOp: (ids, g (N,C)) -> (V,C), each row of g added to row ids[i].
type embedBackOp struct {
	opBase
	fwd embedOp
	buf *outBuf
}

func (o embedBackOp) Arity() int    { return 2 }
func (o embedBackOp) Type() hm.Type { return hm.NewFnType(idsT, matT, matT) }
func (o embedBackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.fwd.V, o.fwd.C}, nil
}
func (o embedBackOp) Do(in ...G.Value) (G.Value, error) {
	ids := in[0].Data().([]int)
	out := o.buf.get(dtypeOf(in[1]), true, o.fwd.V, o.fwd.C)
	switch d := out.Data().(type) {
	case []float32:
		scatterAddRows(f32(in[1]), ids, d, o.fwd.C)
	case []float64:
		scatterAddRows(f64(in[1]), ids, d, o.fwd.C)
	}
	return out, nil
}

// scatterAddRows accumulates in id order per channel range: deterministic.
func scatterAddRows[F Float](g []F, ids []int, out []F, C int) {
	parallelFor(C, max(1, min(8, C/32, len(ids)*C>>15)), func(_, lo, hi int) {
		for i, id := range ids {
			dst, src := out[id*C+lo:id*C+hi], g[i*C+lo:i*C+hi]
			for c := range dst {
				dst[c] += src[c]
			}
		}
	})
}

func (o embedBackOp) String() string        { return "EmbedBack" + o.fwd.String()[5:] }
func (o embedBackOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o embedBackOp) Hashcode() uint32      { return hashcode(o) }

// lastRowsOp: x (B*T, C) -> (B, C), the last token of every sequence: the token-shift state
// handed to the next chunk.
type lastRowsOp struct {
	opBase
	B, T, C int
	back    bool // the backward: g (B,C) -> (B*T,C) with g in the last rows
	buf     *outBuf
}

// LastRows takes row T-1 of every sequence of x.
func LastRows(x *G.Node, B, T int) (*G.Node, error) {
	return G.ApplyOp(lastRowsOp{B: B, T: T, C: x.Shape()[1], buf: newOutBuf()}, x)
}

func (o lastRowsOp) Arity() int    { return 1 }
func (o lastRowsOp) Type() hm.Type { return hm.NewFnType(matT, matT) }
func (o lastRowsOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	if o.back {
		return tensor.Shape{o.B * o.T, o.C}, nil
	}
	return tensor.Shape{o.B, o.C}, nil
}
func (o lastRowsOp) Do(in ...G.Value) (G.Value, error) {
	s, _ := o.InferShape()
	out := o.buf.get(dtypeOf(in[0]), o.back, s...)
	switch d := out.Data().(type) {
	case []float32:
		lastRows(o, f32(in[0]), d)
	case []float64:
		lastRows(o, f64(in[0]), d)
	}
	return out, nil
}

func lastRows[F Float](o lastRowsOp, in, out []F) {
	C := o.C
	for b := 0; b < o.B; b++ {
		r := b*o.T + o.T - 1
		if o.back {
			copy(out[r*C:(r+1)*C], in[b*C:(b+1)*C])
		} else {
			copy(out[b*C:(b+1)*C], in[r*C:(r+1)*C])
		}
	}
}

func (o lastRowsOp) String() string {
	return fmt.Sprintf("LastRows{B=%d,T=%d,C=%d,back=%v}", o.B, o.T, o.C, o.back)
}
func (o lastRowsOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o lastRowsOp) Hashcode() uint32      { return hashcode(o) }
func (o lastRowsOp) DiffWRT(int) []bool    { return []bool{true} }
func (o lastRowsOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	b := o
	b.back, b.buf = true, newOutBuf()
	g, err := G.ApplyOp(b, grad)
	return G.Nodes{g}, err
}

func (o embedOp) outBuffer() *outBuf     { return o.buf }
func (o embedBackOp) outBuffer() *outBuf { return o.buf }
func (o lastRowsOp) outBuffer() *outBuf  { return o.buf }
