package model

import (
	"testing"

	G "gorgonia.org/gorgonia"
)

// wkvGraphRun finishes a WKV op's test graph (the x052/x060 WKV6 and x070 WKV7 tests): it adds
// the loss L = y·dy + sT·dsT, differentiates it with respect to ins, runs the graph and passes
// read the values of y, sT and the gradients (in the order of ins) while the machine is open.
func wkvGraphRun(t *testing.T, g *G.ExprGraph, y, sT, dy, dsT *G.Node, ins G.Nodes, read func(vals []G.Value)) {
	t.Helper()
	l1, err := Dot(y, dy)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := Dot(sT, dsT)
	if err != nil {
		t.Fatal(err)
	}
	loss, err := G.Add(l1, l2)
	if err != nil {
		t.Fatal(err)
	}
	var yv, sv G.Value
	G.Read(y, &yv)
	G.Read(sT, &sv)
	grads, err := G.Grad(loss, ins...)
	if err != nil {
		t.Fatal(err)
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	vals := []G.Value{yv, sv}
	for _, gn := range grads {
		vals = append(vals, gn.Value())
	}
	read(vals)
}

// valuesData copies the data of float32 or float64 values.
func valuesData[F Float](vals []G.Value) [][]F {
	out := make([][]F, len(vals))
	for i, v := range vals {
		out[i] = append([]F(nil), v.Data().([]F)...)
	}
	return out
}
