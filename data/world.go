package data

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// WorldTokenizer is the RWKV World tokenizer: greedy longest match over the
// UTF-8 bytes of the text with a trie, as the rwkv package's TRIE_TOKENIZER.
// Id 0 is the end of a document and decodes to nothing.
type WorldTokenizer struct {
	tokens [][]byte // by id; nil where unused
	vocab  int
	maxLen int
	trie   byteTrie
}

// LoadWorldTokenizer reads a vocabulary in the rwkv_vocab_v20230424.txt
// format: one token a line, `<id> <Python str or bytes literal> <byte length>`.
// It checks ids are unique and >= 1, the length column, that no two ids share
// bytes, and that every single byte has a token (so any text can be encoded).
func LoadWorldTokenizer(path string) (*WorldTokenizer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data: world tokenizer: %w", err)
	}
	defer f.Close()
	return readWorldTokenizer(f, path)
}

// readWorldTokenizer parses a World vocabulary; path names it in errors.
func readWorldTokenizer(f io.Reader, path string) (*WorldTokenizer, error) {
	t := &WorldTokenizer{vocab: 65536}
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" {
			continue
		}
		id, tok, err := parseWorldLine(text)
		if err != nil {
			return nil, fmt.Errorf("data: world tokenizer %q line %d: %w: %v", path, line, ErrBadVocab, err)
		}
		if prev, dup := seen[string(tok)]; dup {
			return nil, fmt.Errorf("data: world tokenizer %q line %d: %w: id %d has the bytes of id %d", path, line, ErrBadVocab, id, prev)
		}
		if id < len(t.tokens) && t.tokens[id] != nil {
			return nil, fmt.Errorf("data: world tokenizer %q line %d: %w: duplicate id %d", path, line, ErrBadVocab, id)
		}
		seen[string(tok)] = id
		if id >= len(t.tokens) {
			t.tokens = slices.Grow(t.tokens, id+1-len(t.tokens))[:id+1]
		}
		t.tokens[id] = tok
		t.maxLen = max(t.maxLen, len(tok))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("data: world tokenizer %q: %w", path, err)
	}
	for c := range 256 {
		if _, ok := seen[string([]byte{byte(c)})]; !ok {
			return nil, fmt.Errorf("data: world tokenizer %q: %w: no token for byte 0x%02x", path, ErrBadVocab, c)
		}
	}
	t.vocab = max(t.vocab, len(t.tokens))
	t.trie = newByteTrie(t.tokens)
	return t, nil
}

// parseWorldLine splits `<id> <literal> <length>` the way the reference
// loader does: the literal lies between the first and the last space.
func parseWorldLine(line string) (int, []byte, error) {
	first, last := strings.IndexByte(line, ' '), strings.LastIndexByte(line, ' ')
	if first < 0 || last <= first {
		return 0, nil, fmt.Errorf("want `<id> <literal> <length>`")
	}
	id, err := strconv.Atoi(line[:first])
	if err != nil || id < 1 || id > 1<<24 {
		return 0, nil, fmt.Errorf("bad id %q (0 is the end of document)", line[:first])
	}
	n, err := strconv.Atoi(line[last+1:])
	if err != nil {
		return 0, nil, fmt.Errorf("bad length %q", line[last+1:])
	}
	tok, err := parsePyLiteral(strings.TrimSpace(line[first+1 : last]))
	if err != nil {
		return 0, nil, err
	}
	if len(tok) == 0 || len(tok) != n {
		return 0, nil, fmt.Errorf("token is %d bytes, length column says %d", len(tok), n)
	}
	return id, tok, nil
}

// TokenBytes returns the bytes of every token by id (nil for id 0, the end
// of a document, and for unused ids); the slices must not be modified.
// Exporters write them as a vocabulary (a GGUF file's tokenizer metadata).
func (t *WorldTokenizer) TokenBytes() [][]byte { return slices.Clone(t.tokens) }

func (t *WorldTokenizer) Name() string   { return "world" }
func (t *WorldTokenizer) VocabSize() int { return t.vocab }

func (t *WorldTokenizer) Encode(s string) []int {
	ids, _ := t.encodePrefix(make([]int, 0, len(s)/3+1), []byte(s), true)
	return ids
}

func (t *WorldTokenizer) encodePrefix(dst []int, b []byte, atEOF bool) ([]int, int) {
	i := 0
	for i < len(b) && (atEOF || len(b)-i >= t.maxLen) {
		id, n := t.trie.longest(b[i:])
		dst = append(dst, id)
		i += n
	}
	return dst, i
}

func (t *WorldTokenizer) Decode(ids []int) string {
	var b bytes.Buffer
	for _, id := range ids {
		switch {
		case id == 0:
		case id > 0 && id < len(t.tokens) && t.tokens[id] != nil:
			b.Write(t.tokens[id])
		default:
			b.WriteString("\uFFFD")
		}
	}
	return b.String()
}

// byteTrie is a trie over byte strings stored as sorted child arrays (CSR);
// the root has a direct table.
type byteTrie struct {
	root   [256]int32 // child of the root per byte, -1 if none
	first  []int32    // node i's children are labels/child[first[i]:first[i+1]]
	labels []byte
	child  []int32
	val    []int32 // token id + 1, 0 if no token ends here
}

func newByteTrie(tokens [][]byte) byteTrie {
	type edge struct {
		parent int32
		label  byte
	}
	edges := map[edge]int32{}
	val := []int32{0} // node 0 is the root
	for id, tok := range tokens {
		node := int32(0)
		for _, c := range tok {
			next, ok := edges[edge{node, c}]
			if !ok {
				next = int32(len(val))
				val = append(val, 0)
				edges[edge{node, c}] = next
			}
			node = next
		}
		if tok != nil {
			val[node] = int32(id) + 1
		}
	}
	type triple struct {
		edge
		child int32
	}
	all := make([]triple, 0, len(edges))
	for e, c := range edges {
		all = append(all, triple{e, c})
	}
	slices.SortFunc(all, func(a, b triple) int {
		if a.parent != b.parent {
			return int(a.parent - b.parent)
		}
		return int(a.label) - int(b.label)
	})
	t := byteTrie{first: make([]int32, len(val)+1), labels: make([]byte, len(all)), child: make([]int32, len(all)), val: val}
	for i := range t.root {
		t.root[i] = -1
	}
	for i, e := range all {
		t.labels[i], t.child[i] = e.label, e.child
		t.first[e.parent+1]++
		if e.parent == 0 {
			t.root[e.label] = e.child
		}
	}
	for i := 1; i < len(t.first); i++ {
		t.first[i] += t.first[i-1]
	}
	return t
}

func (t *byteTrie) next(node int32, c byte) int32 {
	if node == 0 {
		return t.root[c]
	}
	lo, hi := t.first[node], t.first[node+1]
	for lo < hi { // binary search over the sorted labels
		m := int32(uint32(lo+hi) >> 1)
		switch l := t.labels[m]; {
		case l == c:
			return t.child[m]
		case l < c:
			lo = m + 1
		default:
			hi = m
		}
	}
	return -1
}

// longest returns the id and length of the longest token that prefixes b.
// b must not be empty and every single byte must be a token.
func (t *byteTrie) longest(b []byte) (id, n int) {
	node := int32(0)
	for i, c := range b {
		if node = t.next(node, c); node < 0 {
			break
		}
		if v := t.val[node]; v > 0 {
			id, n = int(v-1), i+1
		}
	}
	return id, n
}
