package data

import "math"

// bpe appends the ids of one pre-token: its bytes as byte-level symbols,
// merged pair by pair, lowest merge rank first (GPT-2's algorithm).
func (t *NeoXTokenizer) bpe(dst []int, word string) []int {
	if word == "" {
		return dst
	}
	if t.ignoreMrg {
		if id, ok := t.wordIDs[word]; ok {
			return append(dst, int(id))
		}
	}
	t.mu.Lock()
	ids, ok := t.cache[word]
	t.mu.Unlock()
	if !ok {
		ids = t.merge(word)
		t.mu.Lock()
		if len(t.cache) > 1<<16 {
			clear(t.cache)
		}
		t.cache[word] = ids
		t.mu.Unlock()
	}
	for _, id := range ids {
		dst = append(dst, int(id))
	}
	return dst
}

func (t *NeoXTokenizer) merge(word string) []int32 {
	syms := make([]int32, len(word))
	for i := range len(word) {
		syms[i] = t.byteID[word[i]]
	}
	for len(syms) > 1 {
		best := bpeMerge{rank: math.MaxInt32}
		var a, b int32
		for i := 0; i+1 < len(syms); i++ {
			if m, ok := t.merges[mergeKey(syms[i], syms[i+1])]; ok && m.rank < best.rank {
				best, a, b = m, syms[i], syms[i+1]
			}
		}
		if best.rank == math.MaxInt32 {
			break
		}
		out := syms[:0]
		for i := 0; i < len(syms); i++ {
			if i+1 < len(syms) && syms[i] == a && syms[i+1] == b {
				out = append(out, best.id)
				i++
				continue
			}
			out = append(out, syms[i])
		}
		syms = out
	}
	return syms
}
