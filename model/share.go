package model

import (
	"math"
	"sort"

	G "gorgonia.org/gorgonia"
)

// shareBuffers lets op outputs that are never alive at the same time share memory. The tape
// machine runs the nodes in the reverse of G.Sort's order (it compiles exactly that), so each
// value's lifetime is known: it starts when its node runs and ends with the last node that
// reads it, or that may return it (an extract view, or a built-in op that Gorgonia may run in
// place). The values in keep (the loss, the logits, the gradients, the final state...) are read
// after Run and live to the end. Outputs of the same dtype and size are then packed greedily
// into slots, each reused only after its previous tenant's lifetime ended.
func shareBuffers(g *G.ExprGraph, keep G.Nodes) error {
	sorted, err := G.Sort(g)
	if err != nil {
		return err
	}
	n := len(sorted)
	order := make(G.Nodes, n)
	for i, nd := range sorted {
		order[n-1-i] = nd
	}
	pos := make(map[*G.Node]int, n)
	for i, nd := range order {
		pos[nd] = i
	}
	end := make(map[*G.Node]int, n)
	for _, k := range keep {
		end[k] = math.MaxInt
	}
	// Walk backwards so that a consumer's own end is final before its inputs look at it.
	for i := n - 1; i >= 0; i-- {
		c := order[i]
		if end[c] < i {
			end[c] = i
		}
		// Anything but our buffered ops may hand its input's memory on: extract views, and
		// Gorgonia's built-ins, which it may run in place.
		_, custom := c.Op().(bufferedOp)
		aliases := c.Op() != nil && !custom
		for it := g.From(c.ID()); it.Next(); {
			in := it.Node().(*G.Node)
			e := i
			if aliases {
				e = max(e, end[c])
			}
			if end[in] < e {
				end[in] = e
			}
		}
	}
	type tenant struct {
		buf        *outBuf
		start, end int
	}
	groups := map[int][]tenant{}
	for _, nd := range order {
		bo, ok := nd.Op().(bufferedOp)
		if !ok || bo.outBuffer() == nil {
			continue
		}
		size := nd.Shape().TotalSize()
		groups[size] = append(groups[size], tenant{bo.outBuffer(), pos[nd], end[nd]})
	}
	for _, ts := range groups {
		sort.Slice(ts, func(a, b int) bool { return ts[a].start < ts[b].start })
		var slots []*bufSlot
		var busyUntil []int
		for _, t := range ts {
			slot := -1
			for s := range slots {
				if busyUntil[s] < t.start {
					slot = s
					break
				}
			}
			if slot < 0 {
				slots = append(slots, &bufSlot{})
				busyUntil = append(busyUntil, 0)
				slot = len(slots) - 1
			}
			t.buf.slot = slots[slot]
			busyUntil[slot] = t.end
		}
	}
	return nil
}
