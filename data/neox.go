package data

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// NeoXTokenizer implements the subset of Hugging Face tokenizers that
// GPT-NeoX's 20B_tokenizer.json uses: a BPE model with merges over byte-level
// symbols, the GPT-2 pre-tokenizer regex, an NFC (or NFD, NFKC, NFKD)
// normalizer, added tokens matched before BPE, and the ByteLevel decoder.
// Anything else in the file is an error rather than a silent difference.
type NeoXTokenizer struct {
	vocab      int
	tokenBytes [][]byte // by id: bytes of the token, nil if unused
	byteID     [256]int32
	merges     map[uint64]bpeMerge
	rawAdded   addedSet // added tokens matched before normalization
	normAdded  addedSet // added tokens matched after normalization
	norm       []norm.Form
	prefixSp   bool
	useRegex   bool
	ignoreMrg  bool
	addedNL    bool // some added token holds a newline: no safe cut points
	utf8Only   bool // some byte that is never in UTF-8 has no token
	wordIDs    map[string]int32

	mu    sync.Mutex
	cache map[string][]int32
}

type bpeMerge struct{ rank, id int32 }

func mergeKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

type hfAddedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
}

type hfComponent struct {
	Type           string            `json:"type"`
	AddPrefixSpace bool              `json:"add_prefix_space"`
	UseRegex       *bool             `json:"use_regex"`
	Normalizers    []json.RawMessage `json:"normalizers"`
}

type hfTokenizerFile struct {
	AddedTokens   []hfAddedToken  `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         struct {
		Type                    string            `json:"type"`
		Dropout                 *float64          `json:"dropout"`
		ContinuingSubwordPrefix *string           `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string           `json:"end_of_word_suffix"`
		ByteFallback            bool              `json:"byte_fallback"`
		IgnoreMerges            bool              `json:"ignore_merges"`
		Vocab                   map[string]int    `json:"vocab"`
		Merges                  []json.RawMessage `json:"merges"`
	} `json:"model"`
}

// LoadNeoXTokenizer reads a Hugging Face tokenizer.json such as
// 20B_tokenizer.json (vocab 50277).
func LoadNeoXTokenizer(path string) (*NeoXTokenizer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("data: neox tokenizer: %w", err)
	}
	return readNeoXTokenizer(b, path)
}

// readNeoXTokenizer parses a tokenizer.json; path names it in errors.
func readNeoXTokenizer(b []byte, path string) (*NeoXTokenizer, error) {
	t, err := parseNeoX(b)
	if err != nil {
		return nil, fmt.Errorf("data: neox tokenizer %q: %w: %v", path, ErrBadVocab, err)
	}
	return t, nil
}

func parseNeoX(b []byte) (*NeoXTokenizer, error) {
	var f hfTokenizerFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	m := &f.Model
	switch {
	case m.Type != "BPE":
		return nil, fmt.Errorf("model type %q, want BPE", m.Type)
	case m.Dropout != nil && *m.Dropout != 0:
		return nil, fmt.Errorf("BPE dropout is not supported")
	case m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "",
		m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "":
		return nil, fmt.Errorf("subword prefixes and suffixes are not supported")
	case m.ByteFallback:
		return nil, fmt.Errorf("byte_fallback is not supported")
	}
	t := &NeoXTokenizer{merges: map[uint64]bpeMerge{}, wordIDs: map[string]int32{}, cache: map[string][]int32{},
		ignoreMrg: m.IgnoreMerges}
	if err := t.setComponents(&f); err != nil {
		return nil, err
	}
	for tok, id := range m.Vocab {
		if id < 0 || id > 1<<24 {
			return nil, fmt.Errorf("token %q has id %d", tok, id)
		}
		if err := t.setToken(id, byteLevelDecode(tok)); err != nil {
			return nil, err
		}
		t.wordIDs[string(byteLevelDecode(tok))] = int32(id)
	}
	for c := range 256 {
		id, ok := m.Vocab[string(byteLevelChars[c])]
		switch {
		case ok:
			t.byteID[c] = int32(id)
		case c == 0xc0 || c == 0xc1 || c >= 0xf5:
			// Never in UTF-8, so 20B_tokenizer.json leaves them out.
			t.byteID[c], t.utf8Only = -1, true
		default:
			return nil, fmt.Errorf("vocab has no token for byte 0x%02x (%q)", c, byteLevelChars[c])
		}
	}
	if err := t.setMerges(m.Merges, m.Vocab); err != nil {
		return nil, err
	}
	return t, t.setAdded(f.AddedTokens)
}

func (t *NeoXTokenizer) setToken(id int, b []byte) error {
	if id >= len(t.tokenBytes) {
		t.tokenBytes = append(t.tokenBytes, make([][]byte, id+1-len(t.tokenBytes))...)
		t.vocab = id + 1
	}
	if t.tokenBytes[id] != nil && !bytes.Equal(t.tokenBytes[id], b) {
		return fmt.Errorf("id %d used for %q and %q", id, t.tokenBytes[id], b)
	}
	t.tokenBytes[id] = b
	return nil
}

func (t *NeoXTokenizer) setMerges(merges []json.RawMessage, vocab map[string]int) error {
	for rank, raw := range merges {
		var pair []string
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			pair = strings.Split(s, " ")
		} else if err := json.Unmarshal(raw, &pair); err != nil {
			return fmt.Errorf("merge %d: %v", rank, err)
		}
		if len(pair) != 2 {
			return fmt.Errorf("merge %d %s: want two tokens", rank, raw)
		}
		a, okA := vocab[pair[0]]
		b, okB := vocab[pair[1]]
		ab, okAB := vocab[pair[0]+pair[1]]
		if !okA || !okB || !okAB {
			return fmt.Errorf("merge %d %s: token not in vocab", rank, raw)
		}
		if _, dup := t.merges[mergeKey(int32(a), int32(b))]; !dup {
			t.merges[mergeKey(int32(a), int32(b))] = bpeMerge{int32(rank), int32(ab)}
		}
	}
	return nil
}

func (t *NeoXTokenizer) setComponents(f *hfTokenizerFile) error {
	var err error
	if t.norm, err = parseNormalizer(f.Normalizer); err != nil {
		return err
	}
	var pre hfComponent
	if err := json.Unmarshal(f.PreTokenizer, &pre); err != nil || pre.Type != "ByteLevel" {
		return fmt.Errorf("pre_tokenizer %s: want ByteLevel", f.PreTokenizer)
	}
	t.prefixSp, t.useRegex = pre.AddPrefixSpace, pre.UseRegex == nil || *pre.UseRegex
	var dec hfComponent
	if err := json.Unmarshal(f.Decoder, &dec); err != nil || dec.Type != "ByteLevel" {
		return fmt.Errorf("decoder %s: want ByteLevel", f.Decoder)
	}
	var post *hfComponent
	if err := json.Unmarshal(f.PostProcessor, &post); err != nil || (post != nil && post.Type != "ByteLevel") {
		return fmt.Errorf("post_processor %s: want null or ByteLevel", f.PostProcessor)
	}
	return nil
}

func parseNormalizer(raw json.RawMessage) ([]norm.Form, error) {
	var c *hfComponent
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("normalizer: %v", err)
	}
	if c == nil {
		return nil, nil
	}
	forms := map[string]norm.Form{"NFC": norm.NFC, "NFD": norm.NFD, "NFKC": norm.NFKC, "NFKD": norm.NFKD}
	if f, ok := forms[c.Type]; ok {
		return []norm.Form{f}, nil
	}
	if c.Type != "Sequence" {
		return nil, fmt.Errorf("normalizer %q is not supported", c.Type)
	}
	var out []norm.Form
	for _, sub := range c.Normalizers {
		fs, err := parseNormalizer(sub)
		if err != nil {
			return nil, err
		}
		out = append(out, fs...)
	}
	return out, nil
}

func (t *NeoXTokenizer) normalize(s string) string {
	for _, f := range t.norm {
		s = refNormalize(f, s)
	}
	return s
}

func (t *NeoXTokenizer) setAdded(added []hfAddedToken) error {
	for _, a := range added {
		if a.SingleWord || a.LStrip || a.RStrip {
			return fmt.Errorf("added token %q: single_word, lstrip and rstrip are not supported", a.Content)
		}
		if a.Content == "" || a.ID < 0 || a.ID > 1<<24 {
			return fmt.Errorf("bad added token %q id %d", a.Content, a.ID)
		}
		if err := t.setToken(a.ID, []byte(a.Content)); err != nil {
			return err
		}
		t.addedNL = t.addedNL || strings.ContainsAny(a.Content, "\n\r")
		if a.Normalized {
			t.normAdded.add(t.normalize(a.Content), a.ID)
		} else {
			t.rawAdded.add(a.Content, a.ID)
		}
	}
	return nil
}

func (t *NeoXTokenizer) Name() string   { return "neox" }
func (t *NeoXTokenizer) VocabSize() int { return t.vocab }

func (t *NeoXTokenizer) Encode(s string) []int {
	return t.encode(make([]int, 0, len(s)/3+1), s)
}

func (t *NeoXTokenizer) encode(dst []int, s string) []int {
	if t.utf8Only && !utf8.ValidString(s) {
		// Hugging Face only sees valid UTF-8: read each maximal invalid
		// subsequence as one U+FFFD, as Python and Rust do.
		s = toValidUTF8Lossy(s)
	}
	t.rawAdded.split(s, func(piece string, id int) {
		if id >= 0 {
			dst = append(dst, id)
			return
		}
		t.normAdded.split(t.normalize(piece), func(piece string, id int) {
			if id >= 0 {
				dst = append(dst, id)
				return
			}
			dst = t.encodePiece(dst, piece)
		})
	})
	return dst
}

// encodePiece pre-tokenizes text that holds no added token and runs BPE on
// each pre-token.
func (t *NeoXTokenizer) encodePiece(dst []int, s string) []int {
	if t.prefixSp && !strings.HasPrefix(s, " ") {
		s = " " + s
	}
	if !t.useRegex {
		return t.bpe(dst, s)
	}
	for i := 0; i < len(s); {
		j := nextPreToken(s, i)
		dst = t.bpe(dst, s[i:j])
		i = j
	}
	return dst
}

// encodePrefix cuts at the last newline that has a non-space before it and an
// ASCII letter or digit after: the pre-tokenizer always splits there and NFC
// cannot reach across it, so the tokens are those of the whole text.
func (t *NeoXTokenizer) encodePrefix(dst []int, b []byte, atEOF bool) ([]int, int) {
	if atEOF {
		return t.encode(dst, string(b)), len(b)
	}
	if t.addedNL || t.prefixSp || !t.useRegex {
		return dst, 0
	}
	for c := len(b) - 1; c >= 2; c-- {
		if b[c-1] == '\n' && isASCIIAlnum(b[c]) && !isSpaceBefore(b[:c-1]) {
			return t.encode(dst, string(b[:c])), c
		}
	}
	return dst, 0
}

func isASCIIAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func (t *NeoXTokenizer) Decode(ids []int) string {
	var b bytes.Buffer
	for _, id := range ids {
		if id >= 0 && id < len(t.tokenBytes) && t.tokenBytes[id] != nil {
			b.Write(t.tokenBytes[id])
		} else {
			b.WriteString("\uFFFD")
		}
	}
	return b.String()
}
